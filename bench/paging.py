"""Deep pages: page 1,000 through an `after` cursor vs page 1, beside offset paging, over real HTTP.

    python bench/paging.py [--database-url URL] [--rows 100100] [--page-size 100] [--repeat 30]

Seeds `books` (in a fresh SQLite file unless --database-url names a server
database, whose books table is emptied), starts `tiddly serve`, walks to
page 1,000 with `next` cursors, then times page 1, page 1,000 by cursor and
page 1,000 by offset, interleaved, and prints medians and ratios. The target:
page 1,000 by cursor within 1.5x of page 1.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, delete, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tiddly.models import Base, Book


def seed(url: str, rows: int) -> None:
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(delete(Book))
        for start in range(0, rows, 10_000):
            conn.execute(insert(Book), [{"title": f"title {n}", "author": f"author {n % 97}",
                                         "year": None if n % 7 == 0 else 1800 + n % 200}
                                        for n in range(start, min(rows, start + 10_000))])
    engine.dispose()


def serve(url: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "tiddly", "serve", "--port", str(port), "--workers", "1",
                                "--threads", "2", "--database-url", url], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(base + "/-/health", timeout=1).ok:
                return process, base
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("tiddly serve did not start")


def timed(session: requests.Session, url: str, body: dict) -> float:
    start = time.perf_counter()
    response = session.request("FETCH", url, json=body)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200 and len(response.json()["data"]) == body["limit"], response.text[:200]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", type=int, default=100_100)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--orderby", default="id", help='e.g. "year desc" (a nullable, unindexed column)')
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/paging.db"
    seed(url, args.rows)
    process, base = serve(url)
    try:
        http = requests.Session()
        query = {"orderby": args.orderby, "limit": args.page_size}
        after = None
        for _ in range(args.page - 1):
            after = http.request("FETCH", base + "/books", json={**query, **({"after": after} if after else {})}
                                 ).json()["next"]
        cases = {"page 1": query, f"page {args.page} by after": {**query, "after": after},
                 f"page {args.page} by offset": {**query, "offset": (args.page - 1) * args.page_size}}
        times = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, body in cases.items():
                times[name].append(timed(http, base + "/books", body))
    finally:
        process.terminate()
        process.wait()
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    backend = url.split(":", 1)[0]
    print(f"{backend}, {args.rows} rows, pages of {args.page_size}, orderby {args.orderby!r}, "
          f"median of {args.repeat}:")
    first = medians["page 1"]
    for name, ms in medians.items():
        print(f"  {name:<22} {ms:8.2f} ms   {ms / first:5.2f}x page 1")
    ratio = medians[f"page {args.page} by after"] / first
    print(f"after/page-1 ratio {ratio:.2f} (target <= 1.5): {'OK' if ratio <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
