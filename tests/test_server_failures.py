"""`tiddly serve` when things break under it, over real sockets on every database: a worker
killed mid-traffic, a client that closes its socket before the whole body arrived."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import requests

PROMPT = 15  # seconds: a correctness bound, not a timing target


def _workers(pid: int) -> set[int]:
    children = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(c) for c in (task / "children").read_text().split()}
    return children


def _wait_for(condition, timeout: float = PROMPT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_a_killed_worker_is_replaced_and_every_acknowledged_write_is_stored(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=2, threads=2)
    first = _workers(server.process.pid)
    assert len(first) == 2
    acknowledged: list[int] = []
    failed = []
    stop = threading.Event()

    def write():  # a new connection each time, so both workers take writes
        n = 0
        while not stop.is_set():
            n += 1
            try:
                answer = requests.post(server.url + "/dual", json={"text": f"w{n}"}, timeout=PROMPT)
            except requests.RequestException as exc:  # the killed worker's connections: never acknowledged
                failed.append(exc)
                continue
            if answer.status_code == 201:
                acknowledged.append(answer.json()["id"])

    writers = [threading.Thread(target=write) for _ in range(3)]
    for writer in writers:
        writer.start()
    try:
        _wait_for(lambda: len(acknowledged) > 30)
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_for(lambda: (_workers(server.process.pid) - first) or None)
        before = len(acknowledged)
        _wait_for(lambda: len(acknowledged) > before + 30)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert server.process.poll() is None, server.stop()
    now = _workers(server.process.pid)
    assert len(now) == 2 and victim not in now and replaced <= now
    assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200
    stored = requests.request("FETCH", server.url + "/dual",
                              json={"select": ["id"], "where": {"id": {"in": acknowledged[:1000]}}, "limit": 1000})
    assert {row["id"] for row in stored.json()["data"]} == set(acknowledged[:1000])
    assert len(failed) < 20, failed[:3]
