"""CPU instructions per request, counted, not timed: steady on a busy machine.

Calls each app's WSGI callable in-process (no server, no network) for one request path,
under valgrind's callgrind, twice: with WARMUP requests, then with WARMUP + N. The
difference over N is the instructions one request costs the app in Python and C, the
database driver included (not the database server's own work on PostgreSQL).

    apt-get install -y valgrind
    python bench/run.py --db sqlite --rounds 1 --seconds 1     # builds the users table once
    python bench/instructions.py --db sqlite
    python bench/instructions.py --db postgresql --method PATCH --path /users/60001 --body '{"age": 33}'
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


def drive(kind: str, url: str, method: str, path: str, body: str, count: int) -> None:
    from werkzeug.test import EnvironBuilder
    app = load_app(kind, url)
    route, _, query = path.partition("?")
    environ = EnvironBuilder(path=route, query_string=query or None, method=method, data=body or None,
                             content_type="application/json" if body else None).get_environ()
    raw = body.encode()
    status = ""
    for _ in range(WARMUP + count):
        start_response_status = []
        environ_copy = {**environ, "wsgi.input": io.BytesIO(raw)}
        chunks = app(environ_copy, lambda s, h, e=None: start_response_status.append(s))
        b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
        status = start_response_status[0]
    if not status.startswith("2"):
        raise SystemExit(f"{kind} answered {status} to {method} {path}")


def count_instructions(kind: str, url: str, args, count: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--child", kind, "--database-url", url, "--method", args.method, "--path", args.path,
               "--body", args.body, "--count", str(count)]
    done = subprocess.run(command, capture_output=True, text=True)
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
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from run import database_url  # the same database the timed benchmark uses
    url = database_url(args.db, args.database_url)
    if args.child:
        drive(args.child, url, args.method, args.path, args.body, args.count)
        return
    results = {}
    for kind in [s for s in SERVERS if s in args.servers.split(",")]:
        if kind != "tiddly" and args.path.startswith("/users?"):
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
