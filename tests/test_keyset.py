"""Keyset pagination: `next` cursors, `after`, NULL and descending orderings, bad cursors."""
from __future__ import annotations

import threading

import pytest
from envelope import assert_error, ok
from sqlalchemy import create_engine, insert

from tiddly import create_app
from tiddly.config import Config
from tiddly.models import Book

ORDERINGS = [
    None,
    "year",
    "year desc",
    "year nulls first",
    "year desc nulls last",
    "year asc nulls last, title desc",
    ["author desc", "year desc nulls first"],
    "title",
]


def _seed(url: str, count: int, batch: int = 10_000) -> None:
    """Books with repeated authors and years, every fifth year NULL."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for start in range(0, count, batch):
            rows = [{"title": f"t{(i * 7919) % count:06d}", "author": f"a{i % 13}",
                     "year": None if i % 5 == 0 else 1900 + i % 17}
                    for i in range(start, min(start + batch, count))]
            conn.execute(insert(Book), rows)
    engine.dispose()


def _fetch(client, body, table="books"):
    return client.open(f"/{table}", method="FETCH", json=body)


def _walk(client, body, via_get=False) -> list[dict]:
    rows, after = [], None
    while True:
        if via_get:
            query = "&".join(f"{k}={v}" for k, v in body.items()) + (f"&after={after}" if after else "")
            page = ok(client.get(f"/books?{query}"))
        else:
            page = ok(_fetch(client, {**body, **({"after": after} if after else {})}))
        rows += page["data"]
        if "next" not in page:
            assert len(page["data"]) < body["limit"]
            return rows
        assert len(page["data"]) == body["limit"]
        after = page["next"]


@pytest.mark.parametrize("orderby", ORDERINGS, ids=str)
def test_walking_pages_matches_one_ordered_read(client, db_url, orderby):
    _seed(db_url, 60)
    query = {"orderby": orderby} if orderby else {}
    whole = ok(_fetch(client, {**query, "limit": 1000}))["data"]
    walked = _walk(client, {**query, "limit": 7})
    assert [r["id"] for r in walked] == [r["id"] for r in whole]
    assert len({r["id"] for r in walked}) == 60


def test_walk_with_where_and_select_over_get(client, db_url):
    _seed(db_url, 50)
    whole = ok(_fetch(client, {"where": {"author": {"in": ["a1", "a2", "a3"]}}, "orderby": "year desc",
                               "limit": 1000}))["data"]
    walked = _walk(client, {"where": '{"author":{"in":["a1","a2","a3"]}}', "orderby": "year desc",
                            "select": "title", "limit": 4}, via_get=True)
    assert [r["title"] for r in walked] == [r["title"] for r in whole]
    assert set(walked[0]) == {"title"}  # the order columns ride in the cursor, not in the rows


def test_a_short_page_has_no_next(client, db_url):
    _seed(db_url, 5)
    assert "next" not in ok(_fetch(client, {"limit": 6}))
    assert "next" in ok(_fetch(client, {"limit": 5}))


def test_tampered_foreign_and_mixed_cursors_are_400s(client, db_url):
    _seed(db_url, 10)
    token = ok(_fetch(client, {"limit": 3, "where": {"author": {"ne": "zz"}}}))["next"]
    payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for bad in (flipped + "." + signature, payload + "." + signature[::-1], "nonsense", "", 42, ["x"],
                "a.b.c", "é." + signature):
        assert_error(_fetch(client, {"limit": 3, "where": {"author": {"ne": "zz"}}, "after": bad}),
                     400, "bad_cursor")
    for foreign in ({"limit": 3}, {"limit": 3, "where": {"author": {"ne": "zz"}}, "orderby": "year"}):
        assert_error(_fetch(client, {**foreign, "after": token}), 400, "bad_cursor")
    assert_error(_fetch(client, {"limit": 3, "after": token}, table="items"), 400, "bad_cursor")
    mixed = _fetch(client, {"limit": 3, "where": {"author": {"ne": "zz"}}, "after": token, "offset": 3})
    assert_error(mixed, 400, "bad_query")


def test_cursor_key_is_shared_through_the_database_or_the_configured_secret(db_url):
    apps = [create_app(Config(database_url=db_url)) for _ in range(2)]
    _seed(db_url, 10)
    token = ok(_fetch(apps[0].test_client(), {"limit": 4}))["next"]
    assert ok(_fetch(apps[1].test_client(), {"limit": 4, "after": token}))["data"][0]["id"] == 5
    secret_apps = [create_app(Config(database_url=db_url, secret=s)) for s in ("s3cret", "s3cret", "other")]
    token = ok(_fetch(secret_apps[0].test_client(), {"limit": 4}))["next"]
    assert ok(_fetch(secret_apps[1].test_client(), {"limit": 4, "after": token}))["data"][0]["id"] == 5
    assert_error(_fetch(secret_apps[2].test_client(), {"limit": 4, "after": token}), 400, "bad_cursor")
    assert_error(_fetch(apps[0].test_client(), {"limit": 4, "after": token}), 400, "bad_cursor")
    for app in apps + secret_apps:
        app.extensions["tiddly"].db.dispose()


def test_walk_while_another_client_inserts(app, db_url):
    _seed(db_url, 300)
    stop = threading.Event()

    def insert_books():
        writer = app.test_client()
        while not stop.is_set():
            ok(writer.post("/books", json={"title": "new", "author": "a0", "year": 1950}), 201)

    thread = threading.Thread(target=insert_books)
    thread.start()
    try:
        walked = _walk(app.test_client(), {"orderby": "year desc nulls last", "limit": 25})
    finally:
        stop.set()
        thread.join()
    ids = [r["id"] for r in walked]
    assert len(ids) == len(set(ids))  # no row twice
    assert set(range(1, 301)) <= set(ids)  # every row that existed before the walk, once


def test_walk_one_hundred_thousand_rows(sqlite_url):
    app = create_app(Config(database_url=sqlite_url))
    _seed(sqlite_url, 100_000)
    for orderby in ("id", "year desc"):
        walked = _walk(app.test_client(), {"orderby": orderby, "limit": 1000, "select": "id"})
        assert len(walked) == 100_000 and len({r["id"] for r in walked}) == 100_000
    app.extensions["tiddly"].db.dispose()
