"""The benchmark: Tiddly against a hand-written Flask + SQLAlchemy app, a bare WSGI floor and,
on request, the peers sandman2 and Flask-Restless-NG.

    python bench/run.py [--db sqlite|postgresql|mysql] [--seconds N] [--workers N] [--rounds N]
                        [--servers tiddly,tiddly_reflect,reference,floor,flask_floor,sandman2,restless]
                        [--before PYTHON]

Builds a ``users`` table of 100,000 rows (on SQLite a WAL-mode file made by a plain sqlite3 script, as
a user's file is: make_sqlite_users.py), serves it under the same HTTP server (--http granian|gunicorn;
Tiddly with --models and with --reflect; bench/serve.py; the peers from their own virtual environments
through bench/peers/serve.py), drives each with wrk (8 keep-alive connections, bench/wrk.lua) for seven
workloads, checks answers, and prints requests/s, p50, p99, the server's CPU milliseconds per request and
each Tiddly's ratios to every other server (medians over rounds of same-round ratios); on PostgreSQL and
MariaDB then each server's round trips per request (bench/round_trips.py). Results go to
bench/results/<db>-<time>.json. Needs wrk: see bench/README.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, delete, func, insert, inspect, literal, select, text

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_models import metadata, users
from grammar import STYLES as GRAMMARS
from grammar import not_expressible
from peers import venvs

ROWS = 100_000
NAMES = 500
CONNECTIONS = 8
WRK_THREADS = 2
SERVERS = ("tiddly", "tiddly_reflect", "reference", "floor", "flask_floor", "sandman2", "restless",
           "before", "before_reflect")
DEFAULT_SERVERS = SERVERS[:4]  # flask_floor (Flask's own ceiling) and the peers on request: --servers
# Tiddly as users run it: with the table's models (--models bench/bench_models.py), and reading the
# table from the database (--reflect). Each is compared with every other server.
TIDDLYS = ("tiddly", "tiddly_reflect")
# The same two, run by another interpreter (--before PYTHON: one whose tiddly is the code before a change).
BEFORE = {"before": "tiddly", "before_reflect": "tiddly_reflect"}
PEERS = ("sandman2", "restless")
STYLES = {"tiddly": "tiddly", "tiddly_reflect": "tiddly", "reference": "plain", "floor": "plain",
          "flask_floor": "plain", "sandman2": "sandman2", "restless": "restless", "before": "tiddly",
          "before_reflect": "tiddly"}
OTHERS = ("reference", "floor", "flask_floor", "sandman2", "restless")
# (subject, other) pairs whose same-round ratios are reported: each Tiddly, and each Tiddly of --before,
# against every other server; and each Tiddly against the same Tiddly before the change.
RATIO_PAIRS = ([(t, o) for t in (*TIDDLYS, *BEFORE) for o in OTHERS]
               + [(after, before) for before, after in BEFORE.items()])
BEFORE_PYTHON: list[str] = []  # set by --before
READS = ("get_pk", "page_name", "page_age")
WORKLOADS = READS + ("insert", "update", "delete", "bulk")
DELETE_POOL = 100_000
BULK_MIN_SECONDS = 10
WARMUP_SECONDS = 1
DELETE_STRIDE = 50_000_000  # delete pools live far above the ids that inserts take
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
URL_VARS = {"postgresql": ("TIDDLY_BENCH_POSTGRESQL_URL", "TIDDLY_TEST_POSTGRESQL_URL"),
            "mysql": ("TIDDLY_BENCH_MYSQL_URL", "TIDDLY_TEST_MYSQL_URL")}


def database_url(db: str, override: str | None) -> str:
    if override:
        return override
    if db == "sqlite":
        return f"sqlite:///{HERE / 'results' / 'bench.sqlite'}"
    for var in URL_VARS[db]:
        if os.environ.get(var):
            return os.environ[var]
    sys.exit(f"set {URL_VARS[db][0]} (or --database-url) to benchmark {db}")


# -- the data --------------------------------------------------------------------

def user_row(i: int) -> dict:
    return {"id": i, "email": f"u{i:06d}@bench.test", "name": f"name{i % NAMES}", "age": 18 + (i * 7) % 63,
            "created_at": dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i)}


def build_table(engine) -> None:
    if engine.dialect.name == "sqlite":
        build_sqlite_file(engine)
        return
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for start in range(1, ROWS + 1, 10_000):
            conn.execute(insert(users), [user_row(i) for i in range(start, min(start + 10_000, ROWS + 1))])
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": ROWS})
        conn.execute(text("ANALYZE TABLE users" if engine.dialect.name == "mysql" else "ANALYZE users"))


def build_sqlite_file(engine) -> None:
    """A fresh file, made as another program makes it (make_sqlite_users.py: sqlite3 and SQL, WAL mode),
    and no Tiddly file beside it: every server opens that one file, as a user serves the file they have."""
    path = Path(engine.url.database)
    path.parent.mkdir(exist_ok=True)
    engine.dispose()
    for leftover in path.parent.glob(path.name + "*"):  # -wal, -shm, Tiddly's -tiddly sidecar, writer locks
        leftover.unlink()
    subprocess.run([sys.executable, str(HERE / "make_sqlite_users.py"), str(path), str(ROWS)], check=True)


def fill_delete_pool(engine, base: int) -> None:
    """Copy the first DELETE_POOL rows to ids base+1.. for one delete run to remove."""
    src = select(users.c.id + base, literal("d") + (users.c.id + base).cast(users.c.email.type) + "@bench.test",
                 users.c.name, users.c.age, users.c.created_at).where(users.c.id <= DELETE_POOL)
    with engine.begin() as conn:
        conn.execute(insert(users).from_select([c.name for c in users.c], src))


def drop_delete_pool(engine, base: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(users).where(users.c.id > base, users.c.id <= base + DELETE_POOL))


# -- servers -------------------------------------------------------------------

def server_argv(kind: str, url: str, port: int, workers: int, threads: int, http: str) -> list[str]:
    if kind in TIDDLYS or kind in BEFORE:  # exactly as a user would serve it
        schema = ["--models", str(HERE / "bench_models.py")] if "reflect" not in kind else ["--reflect"]
        python = BEFORE_PYTHON[0] if kind in BEFORE else sys.executable
        return [python, "-m", "tiddly", "serve", *schema, "--database-url", url, "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--threads", str(threads), "--server", http]
    if kind in PEERS:  # from the peer's own virtual environment (built on first use)
        return [str(venvs.python(kind, http)), str(HERE / "peers" / "serve.py"), kind, venvs.database_url(kind, url),
                str(port), str(workers), str(threads), http]
    return [sys.executable, str(HERE / "serve.py"), kind, url, str(port), str(workers), str(threads), http]


class Server:
    def __init__(self, kind: str, url: str, port: int, workers: int, threads: int, http: str):
        self.kind, self.port = kind, port
        argv = server_argv(kind, url, port, workers, threads, http)
        (HERE / "results").mkdir(exist_ok=True)
        dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.log = open(HERE / "results" / f"{dialect}-{kind}.log", "w")
        # --before's interpreter runs from its own folder: `-m` would import this checkout's tiddly
        cwd = Path(BEFORE_PYTHON[0]).parent if kind in BEFORE else HERE.parent
        self.proc = subprocess.Popen(argv, stderr=self.log, cwd=cwd)
        grammar = GRAMMARS[STYLES[kind]]
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:  # not another's server on the port
            try:
                if request(port, *grammar.get(1), grammar.headers)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{kind} did not start on port {port}: see {self.log.name}")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server so far: the master and every process under it."""
        pids, total = [self.proc.pid], 0
        while pids:
            pid = pids.pop()
            try:  # fields after the ")" that ends the command name: utime and stime are the 12th and 13th
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
            pids += children(pid)
        return total / CLOCK_TICKS

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def free_port() -> int:
    """A port no one listens on now (other benches may run on the machine at the same time)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}").glob("task/*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return found


def request(port: int, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body) if body is not None else None
    headers = headers or {"Content-Type": "application/json"}
    conn.request(method, path, data, headers if data else {k: v for k, v in headers.items() if k == "Accept"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    if not raw:
        return resp.status, {}
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, {"raw": raw[:200].decode(errors="replace")}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    """Peak resident memory of the server's worker processes while a load runs."""

    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.server, self.peak, self._done = server, 0.0, threading.Event()

    def run(self):
        while not self._done.wait(0.2):
            for pid in self.server.worker_pids():
                self.peak = max(self.peak, rss_mb(pid))

    def finish(self) -> float:
        self._done.set()
        self.join()
        return self.peak


# -- correctness samples -----------------------------------------------------------

def check(engine, server: Server, workload: str, tag: str, delete_base: int = 0) -> None:
    """One request of the workload, its answer compared with the database's own."""
    api, n = GRAMMARS[STYLES[server.kind]], uuid.uuid4().hex[:8]
    c = users.c

    def call(method, path, body):
        return request(server.port, method, path, body, api.headers)

    with engine.connect() as conn:
        def ids(stmt):
            return [r[0] for r in conn.execute(stmt)]

        def row(pk):
            r = conn.execute(select(c.email, c.name, c.age).where(c.id == pk)).first()
            conn.rollback()
            return tuple(r) if r else None

        if workload == "get_pk":
            status, body = call(*api.get(54321))
            ok = lambda: api.one(body)["id"] == 54321 and api.one(body)["email"] == row(54321)[0]
        elif workload == "page_name":
            status, body = call(*api.page_name("name7"))
            want = ids(select(c.id).where(c.name == "name7").order_by(c.email.desc()).limit(20).offset(40))
            ok = lambda: [r["id"] for r in api.rows(body)] == want
        elif workload == "page_age":
            status, body = call(*api.page_age())
            want = ids(select(c.id).where(c.age > 30, c.age < 40).order_by(c.id).limit(50))
            ok = lambda: [r["id"] for r in api.rows(body)] == want
        elif workload == "insert":
            item = {"email": f"chk-{tag}-{n}@bench.test", "name": "check", "age": 33}
            status, body = call(*api.insert(item))
            ok = lambda: (row(api.created_id(body)) == (item["email"], "check", 33)
                          and api.one(body)["age"] == 33)
        elif workload == "update":
            age = 18 + int(n, 16) % 60
            status, body = call(*api.update(60001, age))
            ok = lambda: row(60001)[2] == age and (status == 204 or api.one(body)["age"] == age)
        elif workload == "delete":
            pk = conn.execute(select(func.max(c.id)).where(c.id > delete_base)).scalar()
            conn.rollback()
            status, body = call(*api.delete(pk))
            ok = lambda: row(pk) is None and (status == 204 or body["id"] == pk)
        else:
            items = [{"email": f"chk-{tag}-{n}-{i}@bench.test", "name": "check", "age": 20} for i in range(1000)]
            status, body = call(*api.bulk(items))
            got = body.get("ids", [])
            ok = lambda: (body["count"] == 1000 and len(got) == 1000
                          and row(got[0]) == (items[0]["email"], "check", 20) and row(got[-1])[0] == items[-1]["email"])
        if status != api.status.get(workload, 200) or not holds(ok):
            raise AssertionError(f"{server.kind} {workload}: wrong answer {status} {str(body)[:300]}")


def holds(predicate) -> bool:
    """The predicate on an answer; False, not an exception, when the answer has another shape."""
    try:
        return bool(predicate())
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return False


# -- load ----------------------------------------------------------------------------

def run_wrk(server: Server, workload: str, seconds: float, tag: str, delete_base: int = 0) -> dict:
    env = {**os.environ, "BENCH_WORKLOAD": workload, "BENCH_STYLE": STYLES[server.kind], "BENCH_TAG": tag,
           "BENCH_DELETE_BASE": str(delete_base), "BENCH_THREADS": str(WRK_THREADS), "BENCH_NAMES": str(NAMES)}
    sampler = RssSampler(server)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if workload == "bulk":
        seconds = max(seconds, BULK_MIN_SECONDS)  # a bulk request takes ~1 s: a short run counts too few
    cpu_before = server.cpu_seconds()
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "20s",
                          "-s", str(HERE / "wrk.lua"), f"http://127.0.0.1:{server.port}"],
                         env=env, capture_output=True, text=True, check=False)
    server_cpu = server.cpu_seconds() - cpu_before
    if "BENCHJSON " not in out.stdout:
        raise RuntimeError(f"wrk failed: {out.stderr[-500:]}")
    out = out.stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = sampler.finish()
    line = next(l for l in out.splitlines() if l.startswith("BENCHJSON "))
    result = json.loads(line[len("BENCHJSON "):])
    seconds_run = result["duration_us"] / 1e6
    client_cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / seconds_run
    errors = result["bad_responses"] + result["socket_errors"]
    return {"rps": result["requests"] / seconds_run, "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000, "requests": result["requests"], "errors": errors,
            "first_bad": result["first_bad"], "client_cpu": client_cpu, "peak_rss_mb": peak,
            "server_cpu_s": server_cpu, "cpu_ms": 1000 * server_cpu / max(result["requests"], 1)}


def one_workload(engine, server: Server, workload: str, seconds: float, tag: str, pool: list[int]) -> dict:
    base = 0
    if workload == "delete":
        pool[0] += 1
        base = pool[0] * DELETE_STRIDE
        fill_delete_pool(engine, base)
    tag += f"s{SERVERS.index(server.kind)}"  # inserted emails differ between servers
    check(engine, server, workload, tag, base)
    result = run_wrk(server, workload, seconds, tag, base)
    check(engine, server, workload, tag, base)
    if workload == "delete":
        drop_delete_pool(engine, base)
    return result


# -- report ------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else float("nan")


METRICS = ("rps", "p50_ms", "p99_ms", "cpu_ms", "client_cpu")


def summarize(rounds: list[dict], workloads) -> dict:
    """Per workload and server: medians over rounds, or {"n/a": reason}; and each Tiddly's ratios to
    each other server ("tiddly/reference", "tiddly_reflect/reference"), req/s (higher is Tiddly faster)
    and CPU ms per request (lower is Tiddly cheaper), each taken within one round, then the median."""
    summary = {}
    for w in workloads:
        entry = {}
        for s in SERVERS:
            runs = [r[s][w] for r in rounds if s in r and w in r[s]]
            if runs and "n/a" in runs[0]:
                entry[s] = runs[0]
            elif runs:
                entry[s] = {k: median([x[k] for x in runs]) for k in METRICS}
                entry[s]["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
                entry[s]["errors"] = sum(x["errors"] for x in runs)
        for subject, other in RATIO_PAIRS:
            pairs = [(r[subject][w], r[other][w]) for r in rounds
                     if "rps" in r.get(subject, {}).get(w, {}) and "rps" in r.get(other, {}).get(w, {})]
            if pairs:
                entry[f"{subject}/{other}"] = median([t["rps"] / o["rps"] for t, o in pairs if o["rps"]])
                entry[f"{subject}/{other} cpu"] = median([t["cpu_ms"] / o["cpu_ms"] for t, o in pairs if o["cpu_ms"]])
        summary[w] = entry
    return summary


def print_table(summary: dict) -> None:
    shown = [s for s in SERVERS if any(s in e for e in summary.values())]
    print(f"{'workload':<10} {'server':<15}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/req':>12}"
          f"{'T/x req/s':>11}{'T/x CPU':>9}{'R/x req/s':>11}{'R/x CPU':>9}")
    for w, e in summary.items():
        for i, s in enumerate(x for x in shown if x in e):
            label = w if i == 0 else ""
            if "n/a" in e[s]:
                print(f"{label:<10} {s:<15}{'n/a':>8}  ({e[s]['n/a']})")
                continue
            r = e[s]
            ratios = "".join(f"{e[f'{t}/{s}']:>11.2f}{e[f'{t}/{s} cpu']:>9.2f}" if f"{t}/{s}" in e else " " * 20
                             for t in TIDDLYS).rstrip()
            bad = f"  BAD ANSWERS: {r['errors']}" if r["errors"] else ""
            print(f"{label:<10} {s:<15}{r['rps']:>8.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['cpu_ms']:>12.2f}"
                  + ratios + bad)
    measured = [(s, e[s]) for e in summary.values() for s in shown if "rps" in e.get(s, {})]
    rss = {s: max((m["peak_rss_mb"] for x, m in measured if x == s), default=0) for s in shown}
    errors = {s: sum(m["errors"] for x, m in measured if x == s) for s in shown}
    cpu = median([m["client_cpu"] for _, m in measured])
    print("T/x: Tiddly's (--models) req/s over the server's (above 1: Tiddly serves more), and its CPU ms per"
          " request over the server's (below 1: Tiddly spends less); R/x: the same for Tiddly --reflect")
    print("peak RSS per worker (MB): " + ", ".join(f"{s} {v:.0f}" for s, v in rss.items()))
    print("bad responses: " + ", ".join(f"{s} {v}" for s, v in errors.items()) +
          f"; wrk client CPU (median): {cpu:.2f} cores")


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


# -- main --------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--database-url", help="override the URL the --db choice would use")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (running the app at once)")
    parser.add_argument("--http", choices=("granian", "gunicorn"), default="granian",
                        help="the HTTP server every app runs under (gunicorn: its gthread worker)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS))
    parser.add_argument("--scale", default=None,
                        help="worker counts for the Tiddly scale-out run (default 1,2,4 on postgresql, none elsewhere)")
    parser.add_argument("--skip-build", action="store_true", help="reuse the table from the last run")
    parser.add_argument("--no-round-trips", action="store_true",
                        help="on PostgreSQL and MariaDB, skip counting each server's round trips per request "
                             "(bench/round_trips.py)")
    parser.add_argument("--round-trips-only", action="store_true",
                        help="count the round trips per request (PostgreSQL, MariaDB) and time nothing")
    parser.add_argument("--before", metavar="PYTHON",
                        help="also serve Tiddly with this interpreter's tiddly (the code before a change) as "
                             "'before' and 'before_reflect', for ratios taken in the same run")
    args = parser.parse_args()
    if args.before:
        BEFORE_PYTHON.append(args.before)
        args.servers += ",before,before_reflect"
    if args.round_trips_only:
        return count_round_trips_only(args)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (see bench/README.md)")
    workloads = [w for w in WORKLOADS if w in args.workloads.split(",")]
    servers = [s for s in SERVERS if s in args.servers.split(",")]
    scale = args.scale if args.scale is not None else ("1,2,4" if args.db == "postgresql" else "")
    url = database_url(args.db, args.database_url)
    engine = create_engine(url)
    if not args.skip_build:
        t0 = time.time()
        build_table(engine)
        print(f"built users ({ROWS} rows) on {engine.dialect.name} in {time.time() - t0:.1f}s", file=sys.stderr)
    with engine.begin() as conn:  # leftovers of an interrupted delete run
        conn.execute(delete(users).where(users.c.id > DELETE_STRIDE))

    tag, pool, rounds = uuid.uuid4().hex[:8], [0], []
    running: list[Server] = []
    try:
        for s in servers:  # one by one, so that a server that fails to start leaves none behind
            running.append(Server(s, url, free_port(), args.workers, args.threads, args.http))
        for server in running:  # untimed: fills caches (compiled SQL, database pages) for every server alike
            for w in READS:
                if not not_expressible(server.kind, w):
                    run_wrk(server, w, WARMUP_SECONDS, tag)
        for n in range(args.rounds):
            result: dict = {s.kind: {} for s in running}
            for w in workloads:
                order = running[n % len(running):] + running[:n % len(running)]  # who goes first rotates
                for server in order:
                    reason = not_expressible(server.kind, w)
                    if reason:
                        result[server.kind][w] = {"n/a": reason}
                        continue
                    try:
                        r = one_workload(engine, server, w, args.seconds, f"{tag}{n}", pool)
                    except AssertionError as exc:
                        if server.kind not in BEFORE:
                            raise
                        # the code before a change may have had a bug the change fixes: noted, not measured
                        result[server.kind][w] = {"n/a": f"the code before the change gave a wrong answer: {exc}"}
                        print(f"round {n + 1} {w:<10} {server.kind:<10} {exc}", file=sys.stderr)
                        continue
                    result[server.kind][w] = r
                    print(f"round {n + 1} {w:<10} {server.kind:<10} {r['rps']:>8.0f} req/s  p50 {r['p50_ms']:.1f} ms"
                          f"  p99 {r['p99_ms']:.1f} ms  cpu {r['cpu_ms']:.2f} ms/req  bad {r['errors']}"
                          f"  rss {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
                    if r["errors"]:
                        print(f"  first bad response: {r['first_bad']}", file=sys.stderr)
            rounds.append(result)
    finally:
        for server in running:
            server.stop()

    scale_out = run_scale(engine, url, [int(x) for x in scale.split(",") if x], args, tag) if scale else {}
    trips = {}
    if args.db != "sqlite" and not args.no_round_trips:
        import round_trips
        trips = round_trips.count_all(sys.modules[__name__], servers, url, engine, workloads, args.workers,
                                      args.threads, args.http)
    summary = summarize(rounds, workloads)
    print(f"\nTiddly benchmark on {args.db}: {args.http}, {args.workers} workers x {args.threads} threads, "
          f"{CONNECTIONS} connections, {args.seconds:g}s x {args.rounds} rounds (medians; CPU is the server's "
          "processes', not the database's)")
    print_table(summary)
    if trips:
        import round_trips
        round_trips.print_counts(trips, workloads)
    for workers, rps in scale_out.items():
        print(f"scale-out: tiddly {workers} worker(s): " + ", ".join(f"{w} {v:.0f} req/s" for w, v in rps.items()))
    out = HERE / "results" / f"{args.db}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"db": args.db, "machine": machine(), "args": vars(args), "summary": summary,
                               "rounds": rounds, "scale_out": scale_out, "round_trips": trips, "peers": peer_versions(servers)},
                              indent=1, default=str))
    print(f"wrote {out.relative_to(HERE.parent)}")
    if any(m.get("errors") for e in summary.values() for m in e.values() if isinstance(m, dict)):
        sys.exit("some servers gave bad answers under load: their numbers are not results (see the log above)")


def peer_versions(servers) -> dict:
    return {p: venvs.pins(p) for p in PEERS if p in servers}


def run_scale(engine, url: str, worker_counts: list[int], args, tag: str) -> dict:
    result = {}
    for workers in worker_counts:
        server = Server("tiddly", url, free_port(), workers, args.threads, args.http)
        try:
            result[workers] = {w: median([run_wrk(server, w, args.seconds, tag)["rps"] for _ in range(args.rounds)])
                               for w in ("get_pk", "page_name")}
        finally:
            server.stop()
    return result


def count_round_trips_only(args) -> None:
    import round_trips
    if args.db == "sqlite":
        sys.exit("--round-trips-only counts a server database's round trips: --db postgresql or mysql")
    servers = [s for s in SERVERS if s in args.servers.split(",")]
    workloads = [w for w in WORKLOADS if w in args.workloads.split(",")]
    url = database_url(args.db, args.database_url)
    engine = create_engine(url)
    if not inspect(engine).has_table("users"):
        build_table(engine)
    round_trips.print_counts(round_trips.count_all(sys.modules[__name__], servers, url, engine, workloads,
                                                   args.workers, args.threads, args.http), workloads)


if __name__ == "__main__":
    main()
