"""Streaming export of 1,000,000 rows over real HTTP, and the server's peak resident memory.

    python bench/export.py [--database-url URL] [--rows 1000000] [--format csv|ndjson]

Seeds `books` (a fresh SQLite file unless --database-url names a server database,
whose books table is emptied), starts `tiddly serve` with one worker, streams
`GET /books` with `Accept: text/csv` (or NDJSON), counts the rows received, and
reads the worker's peak RSS (VmHWM in /proc). Target: under 150 MB.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paging import seed, serve

MEDIA = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=sorted(MEDIA), default="csv")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/export.db"
    started = time.perf_counter()
    seed(url, args.rows)
    print(f"seeded {args.rows} rows in {time.perf_counter() - started:.1f} s")
    process, base = serve(url)
    try:
        workers = children(process.pid)
        before = {pid: peak_rss_mb(pid) for pid in workers}
        started = time.perf_counter()
        received, lines = 0, 0
        with requests.get(base + "/books?orderby=year desc", headers={"Accept": MEDIA[args.format]},
                          stream=True) as response:
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=1 << 16):
                received += len(chunk)
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        after = {pid: peak_rss_mb(pid) for pid in workers}
    finally:
        process.terminate()
        process.wait()
    rows = lines - (1 if args.format == "csv" else 0)
    backend = url.split(":", 1)[0]
    print(f"{backend}: exported {rows} rows as {args.format} ({received / 1e6:.1f} MB) in {elapsed:.1f} s "
          f"({rows / elapsed:,.0f} rows/s)")
    for pid in workers:
        print(f"  worker {pid}: peak RSS {before[pid]:.1f} MB before, {after[pid]:.1f} MB after the export")
    peak = max(after.values())
    assert rows == args.rows, f"expected {args.rows} rows, got {rows}"
    print(f"peak RSS {peak:.1f} MB (target < 150): {'OK' if peak < 150 else 'MISSED'}")


if __name__ == "__main__":
    main()
