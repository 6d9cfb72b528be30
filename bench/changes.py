"""The change feed under load: N listeners on one `tiddly serve`, writes at a steady rate.

    python bench/changes.py [--db sqlite|postgresql|mysql] [--database-url URL] [--listeners 100,1000]
                            [--rate 20] [--seconds 10] [--workers 1] [--threads 4] [--poll 0.1]

For each N: serves a fresh database (the shipped schema; `tiddly changes enable dual`, so the
writes of another program are logged too), times ordinary requests (`GET /books/1`, one after
another on one keep-alive connection) without listeners, opens N `GET /-/changes?tables=dual`
streams, reads the workers' memory (RSS) before and after, times the same requests again with
the N idle listeners, then writes `--rate` rows a second for `--seconds`, alternately through
the API (`POST /dual`) and from outside (a SQLAlchemy connection, like psql), and prints the
delivery latency from commit (the API's answer, or the outside COMMIT's return) to every
listener: p50, p99, max, and what did not arrive.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, inspect, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serving import free_port, wait_healthy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql", "mysql"])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--listeners", default="100,1000")
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--probe-seconds", type=float, default=5)
    parser.add_argument("--poll", type=float, default=0.1, help="TIDDLY_CHANGES_POLL_S")
    args = parser.parse_args()
    for count in [int(n) for n in args.listeners.split(",")]:
        run(args, count)


def _fresh_database(args) -> str:
    if args.db == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='tiddly-bench-changes-')}/bench.db"
    url = args.database_url
    if not url:
        raise SystemExit(f"--database-url is needed for {args.db}")
    engine = create_engine(url)  # a database for the bench: its keys and logged changes go
    with engine.begin() as connection:
        if "api_keys" in inspect(connection).get_table_names():
            connection.execute(text("DELETE FROM api_keys"))
        for table in ("tiddly_changes", "tiddly_change_clock", "tiddly_change_tables", "dual"):
            quoted = connection.dialect.identifier_preparer.quote_identifier(table)
            connection.execute(text(f"DROP TABLE IF EXISTS {quoted}" + (" CASCADE" if args.db == "postgresql" else "")))
    engine.dispose()
    return url


def run(args, count: int) -> None:
    url = _fresh_database(args)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TIDDLY_CHANGES_KEEPALIVE_S": "15", "TIDDLY_CHANGES_POLL_S": str(args.poll)}
    server = subprocess.Popen([sys.executable, "-m", "tiddly", "serve", "--port", str(port), "--workers",
                               str(args.workers), "--threads", str(args.threads), "--database-url", url],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base, server)
        subprocess.run([sys.executable, "-m", "tiddly", "changes", "enable", "dual", "--database-url", url],
                       check=True, capture_output=True)
        requests.post(base + "/books", json={"title": "Probe", "author": "p"}).raise_for_status()
        quiet = probe(port, args.probe_seconds)
        before = workers_rss(server.pid)
        listeners = Listeners(port, count)
        listeners.start()
        deadline = time.monotonic() + 60
        while listeners.connected < count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        after = workers_rss(server.pid)
        loaded = probe(port, args.probe_seconds)
        committed = write(base, url, args.rate, args.seconds)
        time.sleep(2)
        latencies, missing = listeners.latencies(committed)
        listeners.stop()
        print(f"\n== {args.db}, {count} listeners, {args.workers} worker(s) x {args.threads} threads ==")
        print(f"listeners connected: {listeners.connected} of {count}")
        print(f"memory per idle listener: {(after - before) / max(1, listeners.connected) / 1024:.1f} KB "
              f"(workers' RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MB)")
        print(f"ordinary GET p50/p99 without listeners: {ms(quiet, 50):.2f} / {ms(quiet, 99):.2f} ms "
              f"({len(quiet)} requests)")
        print(f"ordinary GET p50/p99 with {count} idle listeners: {ms(loaded, 50):.2f} / {ms(loaded, 99):.2f} ms "
              f"({len(loaded)} requests): p99 x{ms(loaded, 99) / max(ms(quiet, 99), 1e-9):.2f}")
        print(f"delivery commit -> listener, {len(committed)} writes ({args.rate:g}/s, API and outside) x "
              f"{listeners.connected} listeners: p50 {ms(latencies, 50):.1f} ms, p99 {ms(latencies, 99):.1f} ms, "
              f"max {max(latencies, default=0) * 1000:.1f} ms; not delivered: {missing}")
    finally:
        server.terminate()
        server.wait(15)


def ms(samples: list[float], pct: int) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * 1000


def probe(port: int, seconds: float) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        connection.request("GET", "/books/1")
        connection.getresponse().read()
        times.append(time.perf_counter() - start)
    connection.close()
    return times


def write(base: str, url: str, rate: float, seconds: float) -> dict[int, float]:
    """Rows of `dual`, half through the API, half from outside: id -> when its commit returned."""
    engine = create_engine(url)
    dual = engine.dialect.identifier_preparer.quote_identifier("dual")  # a reserved word on MariaDB
    committed: dict[int, float] = {}
    session = requests.Session()
    period, start = 1 / rate, time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, start + i * period - time.monotonic()))
        if i % 2 == 0:
            answer = session.post(base + "/dual", json={"text": f"api {i}"})
            committed[answer.json()["id"]] = time.time()
        else:
            with engine.begin() as connection:
                connection.execute(text(f"INSERT INTO {dual} (text) VALUES (:t)"), {"t": f"outside {i}"})
                row_id = connection.execute(text(f"SELECT max(id) FROM {dual} WHERE text = :t"),
                                            {"t": f"outside {i}"}).scalar_one()
            committed[row_id] = time.time()
    engine.dispose()
    return committed


class Listeners:
    """N streams on one event loop in a thread of their own: when each row's event arrived."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.arrivals: list[dict[int, float]] = [dict() for _ in range(count)]
        self.connected = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        for i in range(self.count):
            asyncio.run_coroutine_threadsafe(self._listen(i), self.loop)

    async def _listen(self, i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
        writer.write(f"GET /-/changes?tables=dual HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
                     .encode())
        await writer.drain()
        mine = self.arrivals[i]
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b": listening"):  # subscribed: from here on it misses nothing
                self.connected += 1
            if line.startswith(b"data: "):
                mine[json.loads(line[6:])["key"]["id"]] = time.time()

    def latencies(self, committed: dict[int, float]) -> tuple[list[float], int]:
        latencies, missing = [], 0
        for mine in self.arrivals:
            for row_id, at in committed.items():
                if row_id in mine:
                    latencies.append(max(0.0, mine[row_id] - at))
                else:
                    missing += 1
        return latencies, missing

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def workers_rss(parent: int) -> int:
    """The resident memory of the server's processes (granian's main and its workers), in bytes."""
    total = 0
    for pid in [parent, *_descendants(parent)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _descendants(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return children + [d for c in children for d in _descendants(c)]


if __name__ == "__main__":
    main()
