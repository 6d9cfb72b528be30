"""The PostgREST dialect against Tiddly's own API, in CPU instructions per request (callgrind).

    apt-get install -y valgrind
    python bench/postgrest.py --db sqlite
    python bench/postgrest.py --db postgresql     # TIDDLY_BENCH_POSTGRESQL_URL (or --database-url)

For each pair it counts (bench/instructions.py: the app's WSGI callable in-process,
WARMUP requests, then WARMUP + N, under valgrind) what one request costs Tiddly's
own route and the same request in PostgREST's grammar, and prints the ratio.
The issue's target: GET /rest/v1/users?id=eq.N at most 1.10x GET /users/N.
Builds the bench's users table (bench/run.py, 100,000 rows) when it is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, inspect

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from instructions import count_instructions  # noqa: E402
from run import build_table, database_url  # noqa: E402

WHERE = quote(json.dumps({"age": 30}))
PAIRS = {  # name -> (Tiddly's own path, the same request at /rest/v1)
    "get_pk": ("/users/60000", "/rest/v1/users?id=eq.60000"),
    "page": (f"/users?where={WHERE}&orderby=id&limit=20", "/rest/v1/users?age=eq.30&order=id&limit=20"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    parser.add_argument("--database-url")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated: " + ", ".join(PAIRS))
    parser.add_argument("--requests", type=int, default=1000, help="per count (GC makes fewer noisy)")
    args = parser.parse_args()
    url = database_url(args.db, args.database_url)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        Path(engine.url.database).parent.mkdir(exist_ok=True)
    if not inspect(engine).has_table("users"):
        build_table(engine)
    engine.dispose()
    for name in args.pairs.split(","):
        costs = [_per_request(url, path, args.requests) for path in PAIRS[name]]
        for path, cost in zip(PAIRS[name], costs):
            print(f"{name:<8} {cost:>12,.0f} instructions per GET {path}")
        print(f"{name:<8} /rest/v1 over Tiddly's own: {costs[1] / costs[0]:.3f}x")


def _per_request(url: str, path: str, count: int) -> float:
    request = argparse.Namespace(method="GET", path=path, body="")
    base, more = (count_instructions("tiddly", url, request, n) for n in (0, count))
    return (more - base) / count


if __name__ == "__main__":
    main()
