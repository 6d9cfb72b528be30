"""Screenshots of the web page's main views, taken by a script, not a hand.

    python docs/screenshots.py [--out docs]

Starts a real `tiddly serve` on a fresh SQLite file, fills it through the API,
drives Debian's Chromium (Playwright, as the tests do) through the page and
writes docs/ui-*.png. Needs the test extra: pip install -e '.[test]'.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium  # tests/browser.py: the Chromium the tests use
from conftest import LiveServer

from tiddly.storage import Database
from tiddly.services import auth

BOOKS = [
    ("Dune", "Frank Herbert", 1965, "978-0441172719"), ("Neuromancer", "William Gibson", 1984, "978-0441569595"),
    ("Foundation", "Isaac Asimov", 1951, None), ("The Left Hand of Darkness", "Ursula K. Le Guin", 1969, None),
    ("Snow Crash", "Neal Stephenson", 1992, None), ("Kindred", "Octavia E. Butler", 1979, None),
    ("The Dispossessed", "Ursula K. Le Guin", 1974, None), ("Parable of the Sower", "Octavia E. Butler", 1993, None),
    ("Hyperion", "Dan Simmons", 1989, None), ("The Fifth Season", "N. K. Jemisin", 2015, None),
    ("A Wizard of Earthsea", "Ursula K. Le Guin", 1968, None), ("I, Robot", "Isaac Asimov", 1950, None),
    ("Solaris", "Stanisław Lem", 1961, None), ("Ancillary Justice", "Ann Leckie", 2013, None),
    ("The Lathe of Heaven", "Ursula K. Le Guin", 1971, None), ("Dawn", "Octavia E. Butler", 1987, None),
    ("The Word for World Is Forest", "Ursula K. Le Guin", 1972, None), ("Wild Seed", "Octavia E. Butler", 1980, None),
    ("<script>alert('hi')</script>", "A row holding markup: shown as text", 2024, None),
]


def fill(base: str) -> None:
    def post(path, rows):
        answer = requests.post(base + path, json=rows, timeout=30)
        answer.raise_for_status()
    post("/books", [{"title": t, "author": a, "year": y, "isbn": i} for t, a, y, i in BOOKS])
    post("/stores", [{"name": "Corner shop"}, {"name": "Night market"}])
    post("/items", [{"name": n, "price": p, "store_id": s} for n, p, s in
                    [("Tea", 2.5, 1), ("Bread", 3.1, 1), ("Noodles", 6.5, 2), ("Dumplings", 5.0, 2)]])
    post("/user", {"email": "ada@example.com", "password": "correct horse", "name": "Ada"})


def shoot(browser, base: str, url: str, out: Path) -> list[Path]:
    """Walk the page through its main views, a PNG of each."""
    page = browser.new_page(viewport={"width": 1200, "height": 760})
    shots = []

    def shot(name, full_page=False):
        path = out / f"ui-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    page.goto(base + "/-/ui/#/")
    page.get_by_role("cell", name="19").wait_for()
    shot("tables")

    page.goto(base + "/-/ui/#/t/books?size=10")
    page.get_by_role("button", name="Add a filter").click()
    page.get_by_label("Filter 1: column").select_option("year")
    page.get_by_label("Filter 1: operator").select_option("gte")
    page.get_by_label("Filter 1: value for year").fill("1965")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("button", name="year").click()
    page.locator("th[aria-sort=ascending]").wait_for()
    page.get_by_role("button", name="Count all rows").click()
    page.locator(".page-status").filter(has_text=" of ").wait_for()
    shot("grid")

    page.goto(base + "/-/ui/#/t/books/r/4")
    page.get_by_label("year", exact=True).fill("nineteen sixty-nine")
    page.get_by_role("button", name="Save").click()
    page.locator(".field-error").filter(has_text="expects").wait_for()
    shot("row")

    db = Database(url)
    with db.session(write=True) as session:
        reader = auth.create_key(session, "reporting", "read")
    db.dispose()
    page.goto(base + "/-/ui/#/t/items")
    page.get_by_role("heading", name="Sign in").wait_for()
    shot("sign-in")
    page.get_by_label("API key").fill(reader)
    page.get_by_role("button", name="Use this key").click()
    page.locator(".page-status").filter(has_text="4 rows.").wait_for()
    shot("read-key")  # no edit controls; the store_id links open the parent row
    return shots


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/screens.db"
        server = LiveServer(url, workers=1, threads=4)
        try:
            fill(server.url)
            with chromium() as browser:  # closed before the server stops: no keep-alive left to wait for
                return shoot(browser, server.url, url, out)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNG files (default: docs)")
    for path in take(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
