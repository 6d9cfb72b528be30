"""Supabase Realtime at scale: N subscribed WebSocket clients on `tiddly serve`, the delivery
latency of each change to each of them (commit -> client), and the memory an idle one costs.

    python bench/realtime.py [--db sqlite,postgresql,mysql] [--clients 1000] [--changes 100] [--rate 5]

For each database: starts `tiddly serve` (--workers x --threads, 2 x 4 by default) on the shipped
schema, makes an API key, and opens --clients sockets as realtime-js does (vsn=2.0.0, apikey in
the URL, access_token in the join), each joining its own channel with a postgres_changes
binding on INSERT into dual, and waits for every join's reply. The server's memory (RSS of the
server and its workers) is read before the sockets open, once they are open and once their
channels are joined, each after 2 s idle: over N, the memory per idle subscribed client, and its
two parts, the socket (granian's WebSocket: a bare ASGI app that only accepts costs the same)
and the channel (Tiddly's: the channel, its feed listener, the task relaying its changes). Then
--changes rows are inserted through POST /dual at --rate a second, and every client timestamps
each change it receives against the change's commit_timestamp (the same clock: one machine):
the p50, p99 and max of all N x changes deliveries, and how many arrived. A change written through one worker reaches
the clients of another at that worker's next read of the change log (changes_poll_s, 0.1 s by default).
The clients are one asyncio process of this script (the websockets package).

Targets (issue 24, as the change feed's): delivery p99 < 250 ms, < 64 KB per idle client.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from run import database_url  # noqa: E402
from streams import healthy, percentile, rss_kb  # noqa: E402

PORT = 18_600
TOPIC = "realtime:bench-{}"


def serve(url: str, port: int, workers: int, threads: int, log, poll_s: float | None = None) -> subprocess.Popen:
    env = {**os.environ, **({"TIDDLY_CHANGES_POLL_S": str(poll_s)} if poll_s is not None else {})}
    process = subprocess.Popen([sys.executable, "-m", "tiddly", "serve", "--database-url", url, "--port", str(port),
                                "--workers", str(workers), "--threads", str(threads)], stdout=log, stderr=log, env=env)
    return healthy(process, port, log)


def new_key(url: str) -> str:
    made = subprocess.run([sys.executable, "-m", "tiddly", "keys", "create", "--name", f"bench-{time.time_ns()}",
                           "--scope", "write", "--database-url", url], capture_output=True, text=True, check=True)
    return made.stdout.strip()


class Client:
    """One realtime-js-like socket with one channel; what it received, and when."""

    def __init__(self, n: int):
        self.n, self.frames, self.ws = n, [], None

    async def connect(self, port: int, key: str) -> None:
        self.ws = await connect(f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={key}&vsn=2.0.0",
                                open_timeout=60, ping_interval=None, max_queue=None)

    async def join(self, key: str) -> None:
        binding = {"event": "INSERT", "schema": "public", "table": "dual"}
        await self.ws.send(json.dumps(["1", "1", TOPIC.format(self.n), "phx_join",
                                       {"config": {"postgres_changes": [binding]}, "access_token": key}]))
        while True:
            _join_ref, ref, _topic, event, payload = orjson.loads(await self.ws.recv())
            if event == "phx_reply" and ref == "1" and payload["status"] != "ok":
                raise RuntimeError(f"join refused: {payload}")
            if event == "system":  # after the join's reply: the channel listens
                return

    async def listen(self) -> None:
        async for frame in self.ws:  # read now, parsed afterwards: the client's own work kept small
            self.frames.append((time.time(), frame))

    def latencies(self) -> list[float]:
        got = []
        for received, frame in self.frames:
            _join_ref, _ref, _topic, event, payload = orjson.loads(frame)
            if event == "postgres_changes":
                committed = dt.datetime.fromisoformat(payload["data"]["commit_timestamp"]).timestamp()
                got.append((received - committed) * 1000)
        return got

    async def beat(self) -> None:
        ref = 100
        while True:
            await asyncio.sleep(25)
            ref += 1
            await self.ws.send(json.dumps([None, str(ref), "phoenix", "heartbeat", {}]))


def write_changes(port: int, key: str, count: int, rate: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        conn.request("POST", "/dual", body=b'{"text": "realtime bench %d"}' % n,
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            raise RuntimeError(f"POST /dual answered {response.status}")
    conn.close()


async def run(port: int, server_pid: int, key: str, args) -> dict:
    # A first socket, channel and write, so that the poller, the hub and the code paths exist before the baseline.
    warm = Client(-1)
    await warm.connect(port, key)
    await warm.join(key)
    await asyncio.get_running_loop().run_in_executor(None, write_changes, port, key, 1, 1)
    await warm.ws.close()
    await asyncio.sleep(1)
    base = rss_kb(server_pid)
    clients = [Client(n) for n in range(args.clients)]
    for start in range(0, len(clients), 100):
        await asyncio.gather(*(c.connect(port, key) for c in clients[start:start + 100]))
    await asyncio.sleep(2)
    connected = rss_kb(server_pid)
    for start in range(0, len(clients), 100):  # joins in waves: each takes a key check
        await asyncio.gather(*(c.join(key) for c in clients[start:start + 100]))
    tasks = [asyncio.create_task(c.listen()) for c in clients] + [asyncio.create_task(c.beat()) for c in clients]
    await asyncio.sleep(2)
    joined = rss_kb(server_pid)
    writer = threading.Thread(target=write_changes, args=(port, key, args.changes, args.rate))
    writer.start()
    while writer.is_alive():
        await asyncio.sleep(0.2)
    deadline = time.monotonic() + 10
    expected = args.changes * len(clients)
    while sum(len(c.frames) for c in clients) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)
    latencies = sorted(x for c in clients for x in c.latencies())
    return {"socket_kb": (connected - base) / len(clients), "channel_kb": (joined - connected) / len(clients),
            "delivered": len(latencies), "expected": expected,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": latencies[-1]}


def measure(db: str, port: int, args) -> dict:
    url = database_url(db, None)
    if db == "sqlite":
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    with open(HERE / "results" / f"realtime-{db}.log", "w") as log:
        process = serve(url, port, args.workers, args.threads, log, args.poll)
        try:
            return asyncio.run(run(port, process.pid, new_key(url), args))
        finally:
            process.terminate()
            process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=100, help="rows inserted while the clients listen")
    parser.add_argument("--rate", type=float, default=5, help="inserts a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--poll", type=float, help="TIDDLY_CHANGES_POLL_S for the server (default: its own, 0.1)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients + 256)), hard))
    (HERE / "results").mkdir(exist_ok=True)
    poll = f", changes_poll_s {args.poll:g}" if args.poll is not None else ""
    print(f"{args.clients} subscribed realtime clients, {args.changes} inserts at {args.rate:g}/s "
          f"({args.workers} workers x {args.threads} threads{poll}); delivery commit -> client in ms")
    print(f"{'database':<11}{'delivered':>16}{'p50':>8}{'p99':>8}{'max':>8}{'KB/client':>10}{'socket':>8}"
          f"{'channel':>9}")
    for n, db in enumerate(args.db.split(",")):
        r = measure(db, PORT + n, args)
        print(f"{db:<11}{r['delivered']:>9}/{r['expected']:<6}{r['p50']:>8.1f}{r['p99']:>8.1f}{r['max']:>8.1f}"
              f"{r['socket_kb'] + r['channel_kb']:>10.1f}{r['socket_kb']:>8.1f}{r['channel_kb']:>9.1f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
