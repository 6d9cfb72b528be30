"""Sessions (DESIGN section 1) and the meta routes, through HTTP on every database.

One session per request, committed once, rolled back on any error, always
closed: after 2,000 mixed requests, half of them failing in every way a request
can fail, the pool holds no checked-out connection and the server still answers.
"""
from __future__ import annotations

import random
from collections import Counter

from envelope import assert_error, ok
from sqlalchemy import create_engine, func, select

from tiddly import create_app
from tiddly.config import Config
from tiddly.models import Dual

REQUESTS = 2000
UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/tiddly_nowhere"


def _good_requests(client, state):
    """Requests that succeed; each returns (method, path, body) built from the current state."""
    rows = state["rows"]
    pick = lambda: rows[len(rows) // 2]  # noqa: E731 - a row that exists
    return [
        lambda: ("POST", "/dual", {"text": "new"}),
        lambda: ("GET", f"/dual/{pick()}", None),
        lambda: ("FETCH", "/dual", {"where": {"id": {"gte": pick()}}, "orderby": "id desc", "limit": 3}),
        lambda: ("PATCH", f"/dual/{pick()}", {"text": "patched"}),
        lambda: ("DELETE", f"/dual/{rows[-1]}", None),
    ]


BAD_REQUESTS = [
    ("POST", "/books", {"title": "no author"}, 400),                                      # checked before SQL
    ("POST", "/books", {"title": "t", "author": "a", "isbn": "taken"}, 409),             # unique, in the database
    ("POST", "/items", {"name": "i", "price": 1.0, "store_id": 424242}, 409),             # foreign key
    ("GET", "/dual/999999", None, 404),                                                   # missing row, read
    ("PATCH", "/dual/999999", {"text": "x"}, 404),                                         # missing row, write
    ("DELETE", "/dual/999999", None, 404),
    ("FETCH", "/dual", {"where": {"nope": 1}}, 400),
    ("PUT", "/books/77", {"title": "t", "author": "a", "isbn": "taken"}, 409),            # upsert conflict
    ("POST", "/books", [{"title": "a", "author": "b"}, {"title": "c", "author": "d", "isbn": "taken"}], 409),
    ("POST", "/dual", "raw:{\"text\": ", 400),                                             # malformed JSON
]


def _send(client, method, path, body):
    if isinstance(body, str) and body.startswith("raw:"):
        return client.open(path, method=method, data=body[4:], content_type="application/json")
    return client.open(path, method=method, json=body)


def test_2000_mixed_requests_leave_no_connection_checked_out(client, app, db_url):
    ok(client.post("/books", json={"title": "t", "author": "a", "isbn": "taken"}), 201)
    first = ok(client.post("/dual", json=[{"text": str(i)} for i in range(5)]), 201)["ids"]
    state = {"rows": list(first)}
    rng = random.Random(2017)
    plan = ["good"] * (REQUESTS // 2) + ["bad"] * (REQUESTS // 2)
    rng.shuffle(plan)
    statuses, bad_index = Counter(), 0
    for kind in plan:
        if kind == "good":
            method, path, body = rng.choice(_good_requests(client, state))()
            if method == "DELETE" and len(state["rows"]) < 3:
                method, path, body = "POST", "/dual", {"text": "refill"}
            response = _send(client, method, path, body)
            assert response.status_code in (200, 201), (method, path, response.get_data(as_text=True))
            if method == "POST":
                state["rows"].append(response.get_json()["id"])
            elif method == "DELETE":
                state["rows"].pop()
        else:
            method, path, body, status = BAD_REQUESTS[bad_index % len(BAD_REQUESTS)]
            bad_index += 1
            response = _send(client, method, path, body)
            assert_error(response, status, response.get_json()["code"])
        statuses[response.status_code] += 1

    assert sum(statuses.values()) == REQUESTS
    assert sum(n for code, n in statuses.items() if code >= 400) == REQUESTS // 2
    assert {400, 404, 409} <= set(statuses)
    assert app.extensions["tiddly"].db.engine.pool.checkedout() == 0

    # Still answering, and every success was committed, every failure rolled back.
    created = ok(client.post("/dual", json={"text": "after"}), 201)["id"]
    assert ok(client.get(f"/dual/{created}"))["data"] == {"id": created, "text": "after"}
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Dual)).scalar_one() == len(state["rows"]) + 1
            books = conn.execute(select(func.count()).select_from(Dual.metadata.tables["books"])).scalar_one()
            items = conn.execute(select(func.count()).select_from(Dual.metadata.tables["items"])).scalar_one()
        assert (books, items) == (1, 0)
    finally:
        engine.dispose()
    assert app.extensions["tiddly"].db.engine.pool.checkedout() == 0


def test_an_exception_inside_a_request_rolls_back_and_closes(app, client):
    """The session scope itself: a failing block leaves nothing written and nothing checked out."""
    db = app.extensions["tiddly"].db
    try:
        with db.session(write=True) as session:
            session.execute(Dual.__table__.insert().values(text="never"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert db.engine.pool.checkedout() == 0
    assert ok(client.get("/dual"))["data"] == []


# -- meta routes -------------------------------------------------------------------

def test_health_names_the_dialect(client, db_url):
    body = ok(client.get("/-/health"))
    expected = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql"}[db_url.split(":")[0].split("+")[0]]
    assert body["database"] == expected


def test_health_is_503_when_the_database_is_unreachable():
    app = create_app(Config(database_url=UNREACHABLE_URL, create_tables=False))
    try:
        client = app.test_client()
        body = assert_error(client.get("/-/health"), 503, "database_unavailable")
        assert "127.0.0.1" not in body["error"] and "tiddly_nowhere" not in body["error"]
        assert_error(client.get("/dual"), 503, "database_unavailable")
        assert_error(client.post("/dual", json={"text": "x"}), 503, "database_unavailable")
        assert app.extensions["tiddly"].db.engine.pool.checkedout() == 0
    finally:
        app.extensions["tiddly"].db.dispose()


EXPECTED_TABLES = {
    "user": {"id": "integer", "email": "string", "password": "string", "name": "string"},
    "dual": {"id": "integer", "text": "string"},
    "books": {"id": "integer", "title": "string", "author": "string", "year": "integer", "isbn": "string"},
    "stores": {"id": "integer", "name": "string"},
    "items": {"id": "integer", "name": "string", "price": "number", "store_id": "integer"},
}


def test_tables_lists_columns_types_primary_key_and_verbs(client):
    tables = {t["name"]: t for t in ok(client.get("/-/tables"))["data"]}
    assert set(EXPECTED_TABLES) <= set(tables)
    assert not any(name.startswith("-") for name in tables)
    for name, columns in EXPECTED_TABLES.items():
        table = tables[name]
        assert {c["name"]: c["type"] for c in table["columns"]} == columns, name
        assert table["primary_key"] == ["id"]
        assert {"GET", "FETCH", "QUERY", "POST", "PUT", "PATCH", "DELETE"} <= set(table["verbs"]), name
    books = {c["name"]: c for c in tables["books"]["columns"]}
    assert books["title"]["required"] and not books["title"]["nullable"]
    assert not books["year"]["required"] and books["year"]["nullable"]
    assert books["id"]["policy"] == "read_only"


def test_tables_never_lists_the_password_as_readable(client):
    ok(client.post("/user", json={"email": "u@x.org", "password": "hunter2"}), 201)
    response = client.get("/-/tables")
    user = next(t for t in ok(response)["data"] if t["name"] == "user")
    password = next(c for c in user["columns"] if c["name"] == "password")
    assert password["policy"] == "write_only_hashed"
    assert not password.get("readable", False)
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "scrypt" not in text
