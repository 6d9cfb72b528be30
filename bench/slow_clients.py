"""Slow clients: N connections send a POST's headers and the first byte of its body, then
nothing, while one client times GET by key; for each HTTP server and database.

    python bench/slow_clients.py [--db sqlite,postgresql] [--http granian,gunicorn] [--stalled 64]
                                 [--kind body|import]

--kind import: each stalled connection is a CSV import instead (`POST /users`, text/csv,
Content-Length 10 MB) that sends a header line and 1.1 MB of rows, past the JSON limit, so the
server streams it into the database, then nothing. Besides the GETs, 20 `GET /-/health` with the
same timeout are counted (answered or timed out) while the connections stall.

Serves the bench's users table (built as bench/run.py builds it, unless --skip-build) with
`tiddly serve --server S` (2 workers x 4 threads by default), opens --stalled connections
that each send `POST /users` with `Content-Length: 100` and `{`, waits a second, then sends
GET /users/N one after another on one keep-alive connection for --seconds (each with a
--timeout; a timed-out request counts at the timeout and reconnects). Prints p50, p99 and
max of the GETs with and without the stalled connections, the GETs that timed out, and how
many stalled connections the server still held open at the end.
"""
from __future__ import annotations

import argparse
import http.client
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from run import ROWS, build_table, database_url

PORT = 18_300
STALLED_REQUEST = (b"POST /users HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 100\r\n\r\n{")


def serve(server: str, url: str, port: int, workers: int, threads: int, log) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tiddly", "serve", "--models", str(HERE / "bench_models.py"), "--database-url",
            url, "--port", str(port), "--workers", str(workers), "--threads", str(threads), "--server", server]
    process = subprocess.Popen(argv, stderr=log, stdout=log, cwd=HERE.parent)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http_client(port, 1)
            conn.request("GET", "/users/1")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{server} did not start on port {port}: see {log.name}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def http_client(port: int, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


IMPORT_HEAD = (b"POST /users HTTP/1.1\r\nHost: bench\r\nContent-Type: text/csv\r\n"
               b"Content-Length: 10000000\r\n\r\nemail,name,age\n")


def import_rows(n: int) -> bytes:
    """About 1.1 MB of new users' rows: past the 1 MB JSON limit."""
    return b"".join(b"s%d-%06d@slow.test,slow,30\n" % (n, i) for i in range(40_000))


def stall(port: int, count: int, kind: str = "body") -> list[socket.socket]:
    sockets = []
    for n in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(STALLED_REQUEST if kind == "body" else IMPORT_HEAD + import_rows(n))
        except OSError:  # refused or reset: the server held no more
            continue
        sockets.append(sock)
    return sockets


def time_health(port: int, count: int, timeout: float) -> tuple[int, int]:
    """(answered 200, timed out or failed) of ``count`` GET /-/health, each on a fresh connection."""
    answered = failed = 0
    for _ in range(count):
        conn = http_client(port, timeout)
        try:
            conn.request("GET", "/-/health")
            response = conn.getresponse()
            response.read()
            answered += response.status == 200
            failed += response.status != 200
        except (OSError, http.client.HTTPException):
            failed += 1
        finally:
            conn.close()
    return answered, failed


def still_open(sockets: list[socket.socket]) -> int:
    """Stalled connections the server has neither answered nor closed."""
    open_ = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            sock.recv(1)  # an answer or the server's close: not held
        except BlockingIOError:
            open_ += 1
        except OSError:
            pass
    return open_


def time_gets(port: int, seconds: float, timeout: float) -> tuple[list[float], int]:
    """Latencies (ms) of GET /users/N, one after another, and how many timed out."""
    latencies, timeouts, conn = [], 0, http_client(port, timeout)
    deadline = time.time() + seconds
    while time.time() < deadline:
        start = time.perf_counter()
        try:
            conn.request("GET", f"/users/{random.randint(1, ROWS)}")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET by key answered {response.status}")
            latencies.append((time.perf_counter() - start) * 1000)
        except (TimeoutError, ConnectionError, http.client.HTTPException):
            timeouts += 1
            latencies.append(timeout * 1000)
            conn.close()
            conn = http_client(port, timeout)
    conn.close()
    return latencies, timeouts


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(server: str, url: str, port: int, args, log) -> dict:
    process = serve(server, url, port, args.workers, args.threads, log)
    try:
        time_gets(port, 1, args.timeout)  # warm-up
        quiet, _ = time_gets(port, args.seconds, args.timeout)
        sockets = stall(port, args.stalled, args.kind)
        time.sleep(1)
        loaded, timeouts = time_gets(port, args.seconds, args.timeout)
        health_ok, health_failed = time_health(port, 20, args.timeout)
        held = still_open(sockets)
        for sock in sockets:
            sock.close()
    finally:
        stop(process)
    return {"quiet_p50": percentile(quiet, 50), "quiet_p99": percentile(quiet, 99),
            "p50": percentile(loaded, 50), "p99": percentile(loaded, 99), "max": max(loaded),
            "requests": len(loaded), "timeouts": timeouts, "held": held, "opened": len(sockets),
            "health_ok": health_ok, "health_failed": health_failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--http", default="granian,gunicorn")
    parser.add_argument("--stalled", type=int, default=64, help="connections that send headers and `{`, then nothing")
    parser.add_argument("--kind", choices=["body", "import"], default="body",
                        help="body: a JSON POST's first byte; import: a CSV import past the JSON limit")
    parser.add_argument("--seconds", type=float, default=10, help="how long the GETs are timed, each phase")
    parser.add_argument("--timeout", type=float, default=5, help="a GET slower than this counts as this")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--skip-build", action="store_true", help="reuse the users table of the last bench run")
    args = parser.parse_args()
    (HERE / "results").mkdir(exist_ok=True)
    rows = []
    for n, db in enumerate(args.db.split(",")):
        url = database_url(db, None)
        if not args.skip_build:
            engine = create_engine(url)
            build_table(engine)
            engine.dispose()
        for m, server in enumerate(args.http.split(",")):
            with open(HERE / "results" / f"slow-{db}-{server}.log", "w") as log:
                r = measure(server, url, PORT + 10 * n + m, args, log)
            rows.append((db, server, r))
            print(f"{db} {server}: {r}", file=sys.stderr)
    what = "stalled JSON bodies" if args.kind == "body" else "stalled CSV imports"
    print(f"\nGET /users/N with {args.stalled} {what} ({args.workers} workers x {args.threads} "
          f"threads, {args.seconds:g}s per phase, ms; a timed-out GET counts as {args.timeout:g} s)")
    print(f"{'database':<11}{'server':<10}{'quiet p50':>10}{'quiet p99':>10}{'p50':>9}{'p99':>9}{'max':>9}"
          f"{'GETs':>7}{'timeouts':>9}{'health ok/20':>13}{'stalled held':>13}")
    for db, server, r in rows:
        print(f"{db:<11}{server:<10}{r['quiet_p50']:>10.1f}{r['quiet_p99']:>10.1f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
              f"{r['max']:>9.1f}{r['requests']:>7}{r['timeouts']:>9}{r['health_ok']:>13}"
              f"{r['held']:>10}/{args.stalled}")


if __name__ == "__main__":
    main()
