"""CPU instructions per request, counted, not timed: steady on a busy machine.

Calls each app's WSGI callable in-process (no server, no network) for one request path,
under valgrind's callgrind, twice: with WARMUP requests, then with WARMUP + N. The
difference over N is the instructions one request costs the app in Python and C, the
database driver included (not the database server's own work on PostgreSQL).

    apt-get install -y valgrind
    python bench/run.py --db sqlite --rounds 1 --seconds 1     # builds the users table once
    python bench/instructions.py --db sqlite
    python bench/instructions.py --db postgresql --method PATCH --path /users/60001 --body '{"age": 33}'
    python bench/instructions.py --db sqlite --workload insert      # or get_pk, update, delete, bulk

A ``--workload`` sends what bench/run.py's workload of that name sends, each request its own
(a new email per insert, another row per update and delete; the rows to delete are copied in
before each count), and to the reference its own URL (``/users/bulk``).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARMUP = 50
SERVERS = ("tiddly", "reference", "floor", "flask_floor")
DELETE_BASE = 50_000_000  # the delete workload's rows: copies of row 1 at ids past any other
WORKLOADS = ("get_pk", "update", "insert", "delete", "bulk")
BULK_ROWS = 1000


def workload_request(workload: str, kind: str, n: int, tag: str) -> tuple[str, str, str]:
    """(method, path, body) of request ``n`` of ``workload`` to a ``kind`` of server."""
    def user(i: int) -> str:
        return f'{{"email":"{tag}-{n}-{i}@instructions.test","name":"ins{i % 50}","age":{18 + (n + i) % 63}}}'
    if workload == "get_pk":
        return "GET", f"/users/{60000 + n % 40000}", ""
    if workload == "update":
        return "PATCH", f"/users/{60000 + n % 40000}", f'{{"age":{18 + n % 63}}}'
    if workload == "insert":
        return "POST", "/users", user(0)
    if workload == "delete":
        return "DELETE", f"/users/{DELETE_BASE + n}", ""
    path = "/users" if kind == "tiddly" else "/users/bulk"
    return "POST", path, "[" + ",".join(user(i) for i in range(BULK_ROWS)) + "]"


def refill_delete_rows(url: str, count: int) -> None:
    """The rows the delete workload removes, ids DELETE_BASE..DELETE_BASE+count-1 (copies of row 1)."""
    from bench_models import users
    from sqlalchemy import create_engine, delete, insert, select
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(delete(users).where(users.c.id >= DELETE_BASE))
        first = conn.execute(select(users).where(users.c.id == 1)).mappings().one()
        conn.execute(insert(users), [{**first, "id": DELETE_BASE + n, "email": f"del{n}@instructions.test"}
                                     for n in range(count)])
    engine.dispose()


def load_app(kind: str, url: str):
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    os.environ["BENCH_DATABASE_URL"] = url
    if kind == "tiddly":  # as `tiddly serve --models bench/bench_models.py` builds it
        from tiddly import create_app, schema
        from tiddly.config import Config
        chosen = schema.from_models_file(HERE / "bench_models.py")
        return create_app(Config.from_env(database_url=url), chosen.metadata, chosen.registry)
    module = {"reference": "reference_app", "floor": "floor_app", "flask_floor": "flask_floor_app"}[kind]
    return __import__(module).app


def environ_for(method: str, path: str, body: str) -> dict:
    from werkzeug.test import EnvironBuilder
    route, _, query = path.partition("?")
    return EnvironBuilder(path=route, query_string=query or None, method=method, data=body or None,
                          content_type="application/json" if body else None).get_environ()


def drive(kind: str, url: str, args, count: int) -> None:
    app = load_app(kind, url)
    tag = f"i{os.getpid()}"
    template = environ_for(args.method, args.path, args.body)
    for n in range(args.warmup + count):
        method, path, body = workload_request(args.workload, kind, n, tag) if args.workload \
            else (args.method, args.path, args.body)
        raw = body.encode()  # the same environ but for the path and the body: cheap beside any request
        environ = {**template, "PATH_INFO": path, "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}
        if raw:
            environ["CONTENT_TYPE"] = "application/json"
        start_response_status = []
        chunks = app(environ, lambda s, h, e=None, seen=start_response_status: seen.append(s))
        b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
        status = start_response_status[0]
        if not status.startswith("2"):
            raise SystemExit(f"{kind} answered {status} to {method} {path}")


def count_instructions(kind: str, url: str, args, count: int) -> int:
    workload, warmup = getattr(args, "workload", None), getattr(args, "warmup", WARMUP)
    if workload == "delete":
        refill_delete_rows(url, warmup + count)
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--child", kind, "--database-url", url, "--method", args.method, "--path", args.path,
               "--body", args.body, "--count", str(count), "--warmup", str(warmup)]
    command += ["--workload", workload] if workload else []
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{kind}: valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--database-url")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/users/60000")
    parser.add_argument("--body", default="")
    parser.add_argument("--workload", choices=WORKLOADS, help="instead of --method, --path and --body")
    parser.add_argument("--requests", type=int, help="counted requests (default 200; bulk 20)")
    parser.add_argument("--warmup", type=int, help=f"requests before counting (default {WARMUP}; bulk 5)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from run import database_url  # the same database the timed benchmark uses
    url = database_url(args.db, args.database_url)
    bulk = args.workload == "bulk"
    args.requests = args.requests or (20 if bulk else 200)
    args.warmup = (5 if bulk else WARMUP) if args.warmup is None else args.warmup
    if args.child:
        drive(args.child, url, args, args.count)
        return
    if args.workload:
        args.method, args.path = workload_request(args.workload, "tiddly", 0, "")[:2]
    results = {}
    for kind in [s for s in SERVERS if s in args.servers.split(",")]:
        if kind != "tiddly" and args.path.startswith("/users?") and not args.workload:
            continue  # the plain apps have their own URLs for pages; compare by key or write
        base, more = (count_instructions(kind, url, args, n) for n in (0, args.requests))
        results[kind] = (more - base) / args.requests
        print(f"{kind:<12} {results[kind]:>12,.0f} instructions per {args.method} {args.path}")
    if "tiddly" in results:
        for other, value in results.items():
            if other != "tiddly":
                print(f"tiddly/{other}: {results['tiddly'] / value:.2f}x the instructions")


if __name__ == "__main__":
    main()
