"""The benchmark: Tiddly against a hand-written Flask + SQLAlchemy app and a bare WSGI floor.

    python bench/run.py [--db sqlite|postgresql|mysql] [--seconds N] [--workers N] [--rounds N]

Builds a ``users`` table of 100,000 rows, serves it three ways under the same HTTP server
(--http granian|gunicorn; bench/serve.py), drives each with wrk (8 keep-alive connections, bench/wrk.lua)
for seven workloads, checks responses, and prints requests/s, p50, p99 and the ratios
Tiddly/reference and Tiddly/floor (medians over rounds of same-round ratios). Results go
to bench/results/<db>-<time>.json. Needs wrk: see bench/README.md.
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
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, delete, func, insert, literal, select, text

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_models import metadata, users  # noqa: E402

ROWS = 100_000
NAMES = 500
CONNECTIONS = 8
WRK_THREADS = 2
SERVERS = ("tiddly", "reference", "floor", "flask_floor")
DEFAULT_SERVERS = SERVERS[:3]  # flask_floor (Flask's own ceiling) on request: --servers
STYLES = {"tiddly": "tiddly", "reference": "plain", "floor": "plain", "flask_floor": "plain"}
RATIO_COLUMNS = {"reference": "T/ref", "floor": "T/floor", "flask_floor": "T/flask"}
READS = ("get_pk", "page_name", "page_age")
WORKLOADS = READS + ("insert", "update", "delete", "bulk")
DELETE_POOL = 100_000
BULK_MIN_SECONDS = 10
WARMUP_SECONDS = 1
DELETE_STRIDE = 50_000_000  # delete pools live far above the ids that inserts take
BASE_PORT = 18_100
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
        Path(engine.url.database).parent.mkdir(exist_ok=True)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for start in range(1, ROWS + 1, 10_000):
            conn.execute(insert(users), [user_row(i) for i in range(start, min(start + 10_000, ROWS + 1))])
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": ROWS})
        conn.execute(text("ANALYZE TABLE users" if engine.dialect.name == "mysql" else "ANALYZE users"))


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

class Server:
    http = "granian"  # the HTTP server every app runs under (--http)

    def __init__(self, kind: str, url: str, port: int, workers: int, threads: int):
        self.kind, self.port = kind, port
        if kind == "tiddly":  # exactly as a user would serve it
            argv = ["-m", "tiddly", "serve", "--models", str(HERE / "bench_models.py"), "--database-url", url,
                    "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--threads", str(threads),
                    "--server", self.http]
        else:
            argv = [str(HERE / "serve.py"), kind, url, str(port), str(workers), str(threads), self.http]
        self.log = open(HERE / "results" / f"{kind}-{port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, *argv], stderr=self.log, cwd=HERE.parent)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(port, "GET", "/users/1")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{kind} did not start on port {port}: see {self.log.name}")

    def worker_pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in children.split()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def request(port: int, method: str, path: str, body=None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
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

def _paths(style: str, name: str) -> dict:
    if style == "tiddly":
        return {"page_name": "/users?where=" + quote(json.dumps({"name": name})) +
                             "&orderby=" + quote("email desc") + "&limit=20&offset=40",
                "page_age": "/users?where=" + quote(json.dumps({"age": {"gt": 30, "lt": 40}})) +
                            "&orderby=id&limit=50",
                "bulk": "/users"}
    return {"page_name": f"/users/by-name/{name}?limit=20&offset=40", "page_age": "/users/by-age?gt=30&lt=40&limit=50",
            "bulk": "/users/bulk"}


def check(engine, server: Server, workload: str, tag: str, delete_base: int = 0) -> None:
    """One request of the workload, its answer compared with the database's own."""
    port, style, n = server.port, STYLES[server.kind], uuid.uuid4().hex[:8]
    paths = _paths(style, "name7")
    c = users.c
    with engine.connect() as conn:
        def ids(stmt):
            return [r[0] for r in conn.execute(stmt)]

        def row(pk):
            r = conn.execute(select(c.email, c.name, c.age).where(c.id == pk)).first()
            conn.rollback()
            return tuple(r) if r else None

        if workload == "get_pk":
            status, body = request(port, "GET", "/users/54321")
            ok = status == 200 and body["data"]["id"] == 54321 and body["data"]["email"] == row(54321)[0]
        elif workload == "page_name":
            status, body = request(port, "GET", paths["page_name"])
            want = ids(select(c.id).where(c.name == "name7").order_by(c.email.desc()).limit(20).offset(40))
            ok = status == 200 and [r["id"] for r in body["data"]] == want
        elif workload == "page_age":
            status, body = request(port, "GET", paths["page_age"])
            want = ids(select(c.id).where(c.age > 30, c.age < 40).order_by(c.id).limit(50))
            ok = status == 200 and [r["id"] for r in body["data"]] == want
        elif workload == "insert":
            item = {"email": f"chk-{tag}-{n}@bench.test", "name": "check", "age": 33}
            status, body = request(port, "POST", "/users", item)
            ok = status == 201 and row(body["id"]) == (item["email"], "check", 33) and body["data"]["age"] == 33
        elif workload == "update":
            age = 18 + int(n, 16) % 60
            status, body = request(port, "PATCH", "/users/60001", {"age": age})
            ok = status == 200 and body["data"]["age"] == age and row(60001)[2] == age
        elif workload == "delete":
            pk = conn.execute(select(func.max(c.id)).where(c.id > delete_base)).scalar()
            conn.rollback()
            status, body = request(port, "DELETE", f"/users/{pk}")
            ok = status == 200 and body["id"] == pk and row(pk) is None
        else:
            items = [{"email": f"chk-{tag}-{n}-{i}@bench.test", "name": "check", "age": 20} for i in range(1000)]
            status, body = request(port, "POST", paths["bulk"], items)
            got = body.get("ids", [])
            ok = (status == 201 and body["count"] == 1000 and len(got) == 1000
                  and row(got[0]) == (items[0]["email"], "check", 20) and row(got[-1])[0] == items[-1]["email"])
    if not ok:
        raise AssertionError(f"{server.kind} {workload}: wrong answer {status} {str(body)[:300]}")


# -- load ----------------------------------------------------------------------------

def run_wrk(server: Server, workload: str, seconds: float, tag: str, delete_base: int = 0) -> dict:
    env = {**os.environ, "BENCH_WORKLOAD": workload, "BENCH_STYLE": STYLES[server.kind], "BENCH_TAG": tag,
           "BENCH_DELETE_BASE": str(delete_base), "BENCH_THREADS": str(WRK_THREADS), "BENCH_NAMES": str(NAMES)}
    sampler = RssSampler(server)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if workload == "bulk":
        seconds = max(seconds, BULK_MIN_SECONDS)  # a bulk request takes ~1 s: a short run counts too few
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "20s",
                          "-s", str(HERE / "wrk.lua"), f"http://127.0.0.1:{server.port}"],
                         env=env, capture_output=True, text=True)
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
            "first_bad": result["first_bad"], "client_cpu": client_cpu, "peak_rss_mb": peak}


def one_workload(engine, server: Server, workload: str, seconds: float, tag: str, pool: list[int]) -> dict:
    base = 0
    if workload == "delete":
        pool[0] += 1
        base = pool[0] * DELETE_STRIDE
        fill_delete_pool(engine, base)
    tag += str(SERVERS.index(server.kind))  # inserted emails differ between servers
    check(engine, server, workload, tag, base)
    result = run_wrk(server, workload, seconds, tag, base)
    check(engine, server, workload, tag, base)
    if workload == "delete":
        drop_delete_pool(engine, base)
    return result


# -- report ------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else float("nan")


def summarize(rounds: list[dict], workloads) -> dict:
    summary = {}
    for w in workloads:
        entry = {}
        for s in SERVERS:
            runs = [r[s][w] for r in rounds if s in r and w in r[s]]
            if runs:
                entry[s] = {k: median([x[k] for x in runs]) for k in ("rps", "p50_ms", "p99_ms", "client_cpu")}
                entry[s]["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
                entry[s]["errors"] = sum(x["errors"] for x in runs)
        for other in RATIO_COLUMNS:
            ratios = [r["tiddly"][w]["rps"] / r[other][w]["rps"] for r in rounds
                      if w in r.get("tiddly", {}) and w in r.get(other, {}) and r[other][w]["rps"]]
            if ratios:
                entry[f"tiddly/{other}"] = median(ratios)
        summary[w] = entry
    return summary


def print_table(summary: dict) -> None:
    shown = [s for s in SERVERS if s in DEFAULT_SERVERS or any(s in e for e in summary.values())]
    ratios = [other for other in RATIO_COLUMNS if other in shown]
    print(f"{'workload':<10}" + "".join(f"{s:>26}" for s in shown) + "".join(f"{RATIO_COLUMNS[o]:>8}" for o in ratios))
    print(f"{'':<10}" + "".join(f"{'req/s   p50ms   p99ms':>26}" for _ in shown))
    for w, e in summary.items():
        cells = "".join(f"{e[s]['rps']:>10.0f}{e[s]['p50_ms']:>8.1f}{e[s]['p99_ms']:>8.1f}" if s in e else f"{'-':>26}"
                        for s in shown)
        print(f"{w:<10}{cells}" + "".join(f"{e.get(f'tiddly/{o}', float('nan')):>8.2f}" for o in ratios))
    rss = {s: max((e[s]["peak_rss_mb"] for e in summary.values() if s in e), default=0) for s in shown}
    errors = {s: sum(e[s]["errors"] for e in summary.values() if s in e) for s in shown}
    cpu = median([e[s]["client_cpu"] for e in summary.values() for s in shown if s in e])
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
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk (see bench/README.md)")
    Server.http = args.http
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
    running = [Server(s, url, BASE_PORT + i, args.workers, args.threads) for i, s in enumerate(servers)]
    try:
        for server in running:  # untimed: fills caches (compiled SQL, database pages) for every server alike
            for w in READS:
                run_wrk(server, w, WARMUP_SECONDS, tag)
        for n in range(args.rounds):
            result: dict = {s.kind: {} for s in running}
            for w in workloads:
                order = running[n % len(running):] + running[:n % len(running)]  # who goes first rotates
                for server in order:
                    r = one_workload(engine, server, w, args.seconds, f"{tag}{n}", pool)
                    result[server.kind][w] = r
                    print(f"round {n + 1} {w:<10} {server.kind:<10} {r['rps']:>8.0f} req/s  p50 {r['p50_ms']:.1f} ms"
                          f"  p99 {r['p99_ms']:.1f} ms  bad {r['errors']}  rss {r['peak_rss_mb']:.0f} MB",
                          file=sys.stderr)
                    if r["errors"]:
                        print(f"  first bad response: {r['first_bad']}", file=sys.stderr)
            rounds.append(result)
    finally:
        for server in running:
            server.stop()

    scale_out = run_scale(engine, url, [int(x) for x in scale.split(",") if x], args, tag) if scale else {}
    summary = summarize(rounds, workloads)
    print(f"\nTiddly benchmark on {args.db}: {args.http}, {args.workers} workers x {args.threads} threads, "
          f"{CONNECTIONS} connections, {args.seconds:g}s x {args.rounds} rounds (medians)")
    print_table(summary)
    for workers, rps in scale_out.items():
        print(f"scale-out: tiddly {workers} worker(s): " + ", ".join(f"{w} {v:.0f} req/s" for w, v in rps.items()))
    out = HERE / "results" / f"{args.db}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"db": args.db, "machine": machine(), "args": vars(args), "summary": summary,
                               "rounds": rounds, "scale_out": scale_out}, indent=1, default=str))
    print(f"wrote {out.relative_to(HERE.parent)}")


def run_scale(engine, url: str, worker_counts: list[int], args, tag: str) -> dict:
    result = {}
    for workers in worker_counts:
        server = Server("tiddly", url, BASE_PORT + 10 + workers, workers, args.threads)
        try:
            result[workers] = {w: median([run_wrk(server, w, args.seconds, tag)["rps"] for _ in range(args.rounds)])
                               for w in ("get_pk", "page_name")}
        finally:
            server.stop()
    return result


if __name__ == "__main__":
    main()
