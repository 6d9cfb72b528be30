"""The web page's first page of a 100,000-row table: the server time of every request it makes.

    python bench/ui_first_page.py [--database-url URL] [--rows 100000] [--repeat 30] [--browser]

Seeds `books` (a fresh SQLite file unless --database-url names a server database,
whose books table is emptied; bench/paging.py's seed), starts `tiddly serve` (one
worker), and times, over real HTTP on loopback, each request the page makes to
show a table's first page (#/t/books, 50 rows): the shell, its files,
/-/whoami, /-/tables and the first FETCH; then the same first page sorted by an
unindexed column, filtered, and the tables list's cheap count. Medians of
--repeat, interleaved; the server's CPU ms per request (its processes' user +
system time over the run, divided by requests); the baseline is GET /-/health in
the same run. The target: the first page's server time (the sum of its requests,
run one after another) under 300 ms. --browser also times, in Debian's Chromium,
a fresh tab from navigation to the rendered grid.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from paging import (  # bench/paging.py: 100,000 books and a one-worker `tiddly serve`
    seed,
    serve,
)

ROOT = Path(__file__).resolve().parent.parent
ASSETS = sorted(p.name for p in (ROOT / "tiddly" / "web" / "ui" / "static").iterdir())
COLUMNS = ["id", "title", "author", "year", "isbn"]
PAGE = {"select": COLUMNS, "limit": 50}
TARGET_MS = 300

# name -> (method, path, JSON body): what opening #/t/books asks, in the page's order.
FIRST_PAGE = {
    "GET /-/ui/ (the shell)": ("GET", "/-/ui/", None),
    **{f"GET static/{name}": ("GET", f"/-/ui/static/{name}", None) for name in ASSETS},
    "GET /-/whoami": ("GET", "/-/whoami", None),
    "GET /-/tables": ("GET", "/-/tables", None),
    "FETCH /books, the first 50 rows": ("FETCH", "/books", PAGE),
}
OTHERS = {
    "the same, sorted by year desc (no index)": ("FETCH", "/books", {**PAGE, "orderby": '"year" desc'}),
    "the same, filtered: author = 'author 42'": ("FETCH", "/books", {**PAGE, "where": {"author": "author 42"}}),
    "the tables list's cheap count (ids, one page)": ("FETCH", "/books", {"select": ["id"]}),
    "baseline: GET /-/health": ("GET", "/-/health", None),
}


def cpu_seconds(pid: int) -> float:
    """User + system time of a process and its children (gunicorn's master and workers)."""
    pids = [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    ticks = 0
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(session: requests.Session, base: str, method: str, path: str, body) -> float:
    start = time.perf_counter()
    response = session.request(method, base + path, json=body)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, (path, response.status_code, response.text[:200])
    return elapsed * 1000


def browser_ms(base: str, repeat: int) -> float:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import (
        chromium,  # tests/browser.py: Debian's Chromium through Playwright
    )

    times = []
    with chromium() as browser:
        for _ in range(repeat):
            context = browser.new_context()
            page = context.new_page()
            start = time.perf_counter()
            page.goto(base + "/-/ui/#/t/books")
            page.locator(".page-status").filter(has_text="Rows 1–50").wait_for()
            times.append((time.perf_counter() - start) * 1000)
            context.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--browser", action="store_true", help="also time the page in Chromium")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/ui_first_page.db"
    seed(url, args.rows)
    process, base = serve(url)
    cases = {**FIRST_PAGE, **OTHERS}
    try:
        http = requests.Session()
        for method, path, body in cases.values():  # warm: connections, statement caches, the cursor key
            timed(http, base, method, path, body)
        times = {name: [] for name in cases}
        cpu = {name: 0.0 for name in cases}
        for _ in range(args.repeat):
            for name, (method, path, body) in cases.items():
                before = cpu_seconds(process.pid)
                times[name].append(timed(http, base, method, path, body))
                cpu[name] += cpu_seconds(process.pid) - before
        in_browser = browser_ms(base, min(args.repeat, 10)) if args.browser else None
    finally:
        process.terminate()
        process.wait()

    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians["baseline: GET /-/health"]
    print(f"{url.split(':', 1)[0]}, {args.rows:,} rows in books, median of {args.repeat} "
          f"(CPU: the server's, per request, averaged; its clock ticks are 10 ms, so short requests read coarse):")
    print(f"  {'request':<48} {'wall ms':>8} {'CPU ms':>7} {'x health':>8}")
    for name, ms in medians.items():
        if name == next(iter(OTHERS)):
            print("  then, beside the first page:")
        print(f"  {name:<48} {ms:8.2f} {1000 * cpu[name] / args.repeat:7.2f} {ms / floor:8.2f}")
    total = sum(medians[name] for name in FIRST_PAGE)
    print(f"first page, all {len(FIRST_PAGE)} requests one after another: {total:.1f} ms "
          f"(target < {TARGET_MS} ms): {'OK' if total < TARGET_MS else 'MISSED'}")
    if in_browser is not None:
        print(f"in Chromium, navigation to the rendered grid (a fresh tab, median): {in_browser:.0f} ms")


if __name__ == "__main__":
    main()
