"""CSV export over real HTTP, on every database: a text cell a spreadsheet would run as a
formula is neutralised in the native export (the API's and the page's, which calls it); the
stored value, JSON, and numbers are unchanged; the PostgREST dialect's CSV stays PostgREST's."""
from __future__ import annotations

import csv
import io

import requests

TITLES = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTab", "plain", "a=b", ""]


def _by_id(text: str) -> dict[str, dict]:
    return {row["id"]: row for row in csv.DictReader(io.StringIO(text))}


def test_csv_export_neutralises_formulas_in_text_cells_only(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=1, threads=2)
    ids = {}
    for n, title in enumerate(TITLES):
        answer = requests.post(server.url + "/books", json={"title": title, "author": "A", "year": -5 - n})
        assert answer.status_code == 201, answer.text
        ids[str(answer.json()["id"])] = (title, -5 - n)

    native = requests.get(server.url + "/books", headers={"Accept": "text/csv"})
    assert native.status_code == 200 and native.headers["Content-Type"].startswith("text/csv")
    rows = _by_id(native.text)
    for pk, (title, year) in ids.items():
        risky = title[:1] in ("=", "+", "-", "@", "\t", "\r")
        assert rows[pk]["title"] == ("'" + title if risky else title)
        assert rows[pk]["year"] == str(year)  # a number column's -5 stays -5

    stored = requests.get(server.url + "/books?limit=100").json()["data"]  # JSON: as stored
    assert sorted(row["title"] for row in stored) == sorted(TITLES)

    dialect = requests.get(server.url + "/rest/v1/books?select=id,title,year", headers={"Accept": "text/csv"})
    assert dialect.status_code == 200
    assert {pk: row["title"] for pk, row in _by_id(dialect.text).items()} == {pk: t for pk, (t, _y) in ids.items()}
