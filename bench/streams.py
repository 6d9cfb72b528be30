"""Long-lived streams: what N idle Server-Sent-Events streams cost `tiddly serve`, and what they
do to ordinary requests.

    python bench/streams.py [--db sqlite,postgresql] [--streams 100,1000] [--seconds 10]

Serves the test-only app of tests/stream_app.py (the shipped app plus an SSE handler registered
through tiddly/web/native.py, served by tiddly serve's server layer, 2 workers x 4 threads by
default). For each database: GET /dual/N one after another on one keep-alive connection for
--seconds with no stream open (the baseline, measured in the same run), then for each N opens
N streams (each reads the table once through `call`, then idles with a keep-alive comment every
15 s) and times the GETs again. Prints the GETs' p50 and p99 and their ratio to the baseline,
and the workers' memory (RSS, summed) per idle stream.
"""
from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from run import database_url  # noqa: E402

APP = HERE.parent / "tests" / "stream_app.py"
PORT = 18_400


def serve(url: str, port: int, workers: int, threads: int, log) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(APP), "--database-url", url, "--port", str(port),
                                "--workers", str(workers), "--threads", str(threads)], stdout=log, stderr=log)
    return healthy(process, port, log)


def healthy(process: subprocess.Popen, port: int, log) -> subprocess.Popen:
    """``process`` once it answers /-/health on ``port`` (else it is killed: see ``log``)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/-/health")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start: see {log.name}")


def rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the workers), in KB."""
    total = 0
    pids = [pid] + [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def open_streams(port: int, count: int) -> list[socket.socket]:
    streams = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /-/test-stream?every=15 HTTP/1.1\r\nHost: bench\r\n\r\n")
        streams.append(sock)
    for sock in streams:
        data = b""
        while b"event: hello" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("a stream closed before its first event")
            data += chunk
    return streams


def time_gets(port: int, seconds: float, rows: int) -> list[float]:
    latencies, conn = [], http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline, n = time.time() + seconds, 0
    while time.time() < deadline:
        n += 1
        start = time.perf_counter()
        conn.request("GET", f"/dual/{n % rows + 1}")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET by key answered {response.status}")
        latencies.append((time.perf_counter() - start) * 1000)
    conn.close()
    return sorted(latencies)


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(url: str, port: int, args, log) -> list[tuple]:
    process = serve(url, port, args.workers, args.threads, log)
    rows = []
    try:
        for n in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/dual", body=b'{"text": "bench %d"}' % n, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        time_gets(port, 1, 20)  # warm-up
        time.sleep(1)
        base_rss = rss_kb(process.pid)
        quiet = time_gets(port, args.seconds, 20)
        rows.append((0, percentile(quiet, 50), percentile(quiet, 99), 1.0, None, len(quiet)))
        for count in args.streams:
            streams = open_streams(port, count)
            time.sleep(1)
            per_stream = (rss_kb(process.pid) - base_rss) / count
            loaded = time_gets(port, args.seconds, 20)
            rows.append((count, percentile(loaded, 50), percentile(loaded, 99),
                         percentile(loaded, 99) / percentile(quiet, 99), per_stream, len(loaded)))
            for sock in streams:
                sock.close()
            time.sleep(1)
    finally:
        process.terminate()
        process.wait(15)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--streams", default="100,1000", help="numbers of idle streams to open, in turn")
    parser.add_argument("--seconds", type=float, default=10, help="how long the GETs are timed, each phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    args.streams = [int(n) for n in args.streams.split(",")]
    (HERE / "results").mkdir(exist_ok=True)
    print(f"GET /dual/N, one after another, with N idle SSE streams open ({args.workers} workers x "
          f"{args.threads} threads, {args.seconds:g} s per phase; ms)")
    print(f"{'database':<11}{'streams':>8}{'p50':>8}{'p99':>8}{'p99 / none':>11}{'KB per stream':>14}{'GETs':>7}")
    for n, db in enumerate(args.db.split(",")):
        with open(HERE / "results" / f"streams-{db}.log", "w") as log:
            for count, p50, p99, ratio, per_stream, gets in measure(database_url(db, None), PORT + n, args, log):
                kb = "-" if per_stream is None else f"{per_stream:.1f}"
                print(f"{db:<11}{count:>8}{p50:>8.2f}{p99:>8.2f}{ratio:>11.2f}{kb:>14}{gets:>7}", flush=True)


if __name__ == "__main__":
    main()
