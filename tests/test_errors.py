"""Every error of DESIGN section 3: status, envelope and stable code, on every database.

Hostile names (ORM attributes, relationships, SQL fragments, the write-only
password) are 400s that never reach SQL; no response ever carries SQL, driver
text or a traceback.
"""
from __future__ import annotations

import io

import pytest
from envelope import assert_error, assert_no_leak, ok
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    select,
)

from tiddly import create_app
from tiddly.config import Config
from tiddly.errors import ERROR_CODES
from tiddly.models import Base

BOOK = {"title": "Dune", "author": "Herbert", "year": 1965, "isbn": "isbn-1"}


@pytest.fixture
def seeded(client):
    ok(client.post("/books", json=BOOK), 201)
    store = ok(client.post("/stores", json={"name": "Corner"}), 201)["id"]
    ok(client.post("/items", json={"name": "Tea", "price": 2.5, "store_id": store}), 201)
    ok(client.post("/user", json={"email": "a@x.org", "password": "pw", "name": "A"}), 201)
    return client


DEMO_TABLES = ("user", "dual", "books", "stores", "items")


def snapshot(db_url) -> dict:
    """The demo tables' rows, as the database holds them (internal tables may change on a read)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(Base.metadata.tables) <= set(inspect(conn).get_table_names())
            return {name: sorted(map(tuple, conn.execute(select(Base.metadata.tables[name])).all()), key=repr)
                    for name in DEMO_TABLES}
    finally:
        engine.dispose()


# -- unknown names ---------------------------------------------------------------

def test_unknown_table_is_404(client):
    for method, path in (("GET", "/nope"), ("POST", "/nope"), ("FETCH", "/nope"), ("DELETE", "/nope/1"),
                         ("GET", "/nope/1"), ("GET", "/__class__"), ("GET", "/metadata"), ("PUT", "/Books/1")):
        body = assert_error(client.open(path, method=method, json={"x": 1}), 404, "unknown_table")
        assert path.split("/")[1] in body["error"]


def test_unknown_route_is_404_envelope(client):
    assert_error(client.get("/"), 404, "not_found")
    response = client.get("/-/nothing")
    assert_error(response, 404, response.get_json()["code"])


UNKNOWN_COLUMN_REQUESTS = [
    ("POST", "/books", {**BOOK, "rating": 5}),
    ("POST", "/books", [BOOK, {**BOOK, "rating": 5}]),
    ("PUT", "/books/1", {"rating": 5}),
    ("PUT", "/books/9", {**BOOK, "rating": 5}),
    ("PATCH", "/books/1", {"rating": 5}),
    ("FETCH", "/books", {"where": {"rating": 5}}),
    ("FETCH", "/books", {"where": {"or": [{"year": 1}, {"not": {"rating": {"gt": 1}}}]}}),
    ("FETCH", "/books", {"select": ["id", "rating"]}),
    ("FETCH", "/books", {"orderby": "year desc, rating"}),
    ("DELETE", "/books", {"where": {"rating": 5}}),
]


def test_unknown_column_is_400_naming_it(seeded, db_url):
    before = snapshot(db_url)
    for method, path, body in UNKNOWN_COLUMN_REQUESTS:
        error = assert_error(seeded.open(path, method=method, json=body), 400, "unknown_column")
        assert "rating" in error["error"] and error["details"]["column"] == "rating", (method, body)
    assert snapshot(db_url) == before


# -- wrong value types -----------------------------------------------------------

WRONG_VALUES = [
    ("year", "1999"),          # string into integer
    ("year", True),            # bool into integer
    ("year", 1999.5),          # fraction into integer
    ("year", 2**31),           # out of 32-bit range
    ("year", -(2**31) - 1),
    ("year", {"n": 1}),
    ("title", 5),              # int into string
    ("title", ["Dune"]),
    ("title", "x" * 256),      # longer than VARCHAR(255)
    ("title", "nul\x00byte"),  # NUL character
    ("title", None),           # NOT NULL
    ("isbn", "9" * 33),        # longer than VARCHAR(32)
]


def test_wrong_value_type_is_400_naming_column(client, db_url):
    for column, value in WRONG_VALUES:
        error = assert_error(client.post("/books", json={**BOOK, column: value}), 400, "bad_value")
        assert column in error["error"] and error["details"]["column"] == column, (column, value)
    assert snapshot(db_url)["books"] == []
    ok(client.post("/books", json=BOOK), 201)
    for column, value in WRONG_VALUES:
        for method, path, body in (("PATCH", "/books/1", {column: value}), ("PUT", "/books/1", {column: value}),
                                   ("FETCH", "/books", {"where": {column: {"in": [value]}}})):
            error = assert_error(client.open(path, method=method, json=body), 400, "bad_value")
            assert column in error["error"], (method, column, value)
    assert snapshot(db_url)["books"] == [(1, "Dune", "Herbert", 1965, "isbn-1")]


def test_values_at_the_edges_are_accepted(client):
    edge = {"title": "x" * 255, "author": "ü" * 254 + "🙂", "year": 2**31 - 1, "isbn": "9" * 32}
    assert ok(client.post("/books", json=edge), 201)["data"] == {"id": 1, **edge}
    assert ok(client.post("/books", json={"title": "t", "author": "a", "year": -(2**31), "isbn": None}), 201)
    assert ok(client.post("/books", json={"title": "t", "author": "a", "year": 1999.0}), 201)["data"]["year"] == 1999
    store = ok(client.post("/stores", json={"name": "s"}), 201)["id"]
    item = ok(client.post("/items", json={"name": "i", "price": 3, "store_id": store}), 201)["data"]
    assert item["price"] == 3.0 and isinstance(item["price"], float)
    assert ok(client.get(f"/items/{item['id']}"))["data"] == item
    patched = ok(client.patch(f"/items/{item['id']}", json={"price": 4}))["data"]
    assert patched["price"] == 4.0 and isinstance(patched["price"], float)


def test_nan_and_infinity_are_not_accepted(client, db_url):
    ok(client.post("/stores", json={"name": "s"}), 201)
    for raw in (b'{"name": "i", "price": NaN, "store_id": 1}', b'{"name": "i", "price": Infinity, "store_id": 1}',
                b'{"name": "i", "price": -Infinity, "store_id": 1}', b'{"name": "i", "price": 1e400, "store_id": 1}'):
        response = client.post("/items", data=raw, content_type="application/json")
        assert response.status_code == 400, raw
        assert_error(response, 400, response.get_json()["code"])
    assert snapshot(db_url)["items"] == []
    for value in ("NaN", "nan", "Infinity", True):
        error = assert_error(client.post("/items", json={"name": "i", "price": value, "store_id": 1}),
                             400, "bad_value")
        assert "price" in error["error"]


def test_missing_required_column_is_400_naming_it(client):
    error = assert_error(client.post("/books", json={"title": "t"}), 400, "missing_column")
    assert "author" in error["error"]


def test_writing_the_generated_id_is_400(client):
    assert_error(client.post("/books", json={**BOOK, "id": 9}), 400, "read_only_column")


# -- conflicts -------------------------------------------------------------------

def test_unique_and_foreign_key_violations_are_409(seeded, db_url):
    before = snapshot(db_url)
    assert_error(seeded.post("/books", json=BOOK), 409, "unique_violation")
    assert_error(seeded.post("/user", json={"email": "a@x.org"}), 409, "unique_violation")
    assert_error(seeded.post("/items", json={"name": "x", "price": 1, "store_id": 99}), 409,
                 "foreign_key_violation")
    assert snapshot(db_url) == before


# -- bodies ----------------------------------------------------------------------

MALFORMED = [b'{"title": ', b"{'title': 'x'}", b'{"title": "x",}', b"\xff\xfe", b"[1, 2", b'"{\\"title\\": "',
             b'{"title": "t", "author": "a"} trailing']


def test_malformed_json_is_400(client, db_url):
    for raw in MALFORMED:
        for method, path in (("POST", "/books"), ("FETCH", "/books"), ("PUT", "/books/1"), ("DELETE", "/books")):
            response = client.open(path, method=method, data=raw, content_type="application/json")
            assert_error(response, 400, "bad_json")
    assert snapshot(db_url)["books"] == []


def test_non_json_body_is_415(client, db_url):
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "text/html", None):
        kwargs = {"content_type": content_type} if content_type else {}
        for method, path in (("POST", "/books"), ("FETCH", "/books"), ("PATCH", "/books/1")):
            response = client.open(path, method=method, data='{"title": "x", "author": "y"}', **kwargs)
            assert_error(response, 415, "unsupported_media_type")
    assert snapshot(db_url)["books"] == []


def test_json_with_charset_and_vendor_suffix_is_accepted(client):
    ok(client.post("/books", data=b'{"title": "t", "author": "a"}', content_type="application/json; charset=utf-8"), 201)
    ok(client.post("/books", data=b'{"title": "u", "author": "a"}', content_type="application/merge-patch+json"), 201)


def test_body_over_max_body_bytes_is_413(db_url):
    app = create_app(Config(database_url=db_url, max_body_bytes=200))
    try:
        client = app.test_client()
        ok(client.post("/dual", json={"text": "x" * 100}), 201)
        big = {"text": "x" * 300}
        assert_error(client.post("/dual", json=big), 413, "payload_too_large")
        assert_error(client.post("/dual", json=[{"text": "x"}] * 40), 413, "payload_too_large")
        assert_error(client.put("/dual/7", json=big), 413, "payload_too_large")
        assert_error(client.open("/dual", method="FETCH", json={"where": {"text": "y" * 300}}),
                     413, "payload_too_large")
        # without a Content-Length (chunked, as a WSGI server passes it on), the limit still holds
        for size, status in ((300, 413), (180, 201)):
            chunked = client.post("/dual", input_stream=io.BytesIO(b'{"text": "' + b"x" * size + b'"}'),
                                  content_type="application/json", headers={"Transfer-Encoding": "chunked"},
                                  environ_overrides={"wsgi.input_terminated": True})
            assert chunked.status_code == status, chunked.get_data(as_text=True)
        assert_error(chunked_too_large(client), 413, "payload_too_large")
        assert [r["id"] for r in ok(client.get("/dual"))["data"]] == [1, 2]
    finally:
        app.extensions["tiddly"].db.dispose()


def chunked_too_large(client):
    return client.post("/dual", input_stream=io.BytesIO(b'[' + b'{"text": "x"}, ' * 30 + b'{}]'),
                       content_type="application/json", environ_overrides={"wsgi.input_terminated": True})


# -- verbs -----------------------------------------------------------------------

def test_unknown_verb_is_405_with_allow(client):
    for method, path, allowed in (("PATCH", "/books", {"GET", "POST", "PUT", "DELETE", "FETCH", "QUERY"}),
                                  ("BREW", "/books", {"GET", "POST"}),
                                  ("POST", "/books/1", {"GET", "PUT", "PATCH", "DELETE"}),
                                  ("FETCH", "/books/1", {"GET", "PUT", "PATCH", "DELETE"}),
                                  ("TRACE", "/books/1", {"GET"})):
        response = client.open(path, method=method, json={"title": "x"})
        body = assert_error(response, 405, "method_not_allowed")
        allow = {v.strip() for v in response.headers["Allow"].split(",")}
        assert allowed <= allow and method not in allow, (method, path, allow)
        assert method in body["error"]


def test_override_of_a_read_verb_on_a_row_is_405(client):
    ok(client.post("/books", json=BOOK), 201)
    response = client.post("/books/1", json={}, headers={"X-HTTP-Method-Override": "FETCH"})
    assert response.status_code == 405 and "Allow" in response.headers


# -- hostile names -----------------------------------------------------------------

HOSTILE = ["metadata", "__class__", "__table__", "__dict__", "_sa_instance_state", "items", "store",
           "id; drop table user", "password", "id)", "id desc; --", " ", "email.__class__"]
HOSTILE_TABLES = ["user", "stores", "items"]


def _assert_400(response, context):
    assert response.status_code == 400, (context, response.get_data(as_text=True))
    assert_error(response, 400, response.get_json()["code"])


def test_hostile_names_in_queries_are_400_and_change_nothing(seeded, db_url):
    before = snapshot(db_url)
    for name in HOSTILE:
        for table in HOSTILE_TABLES:
            queries = [{"where": {name: 1}}, {"where": {name: {"eq": "x"}}}, {"where": {"not": {name: None}}},
                       {"where": {"or": [{"id": 1}, {name: 1}]}}, {"orderby": name}, {"orderby": [f"{name} desc"]},
                       {"orderby": f"id, {name}"}, {"select": [name]}, {"select": f"id,{name}"},
                       {"where": {"id": {name: 1}}}]
            for query in queries:
                _assert_400(seeded.open(f"/{table}", method="FETCH", json=query), (table, query))
            for args in ({"select": name}, {"orderby": name}, {"where": f'{{"{name}": 1}}'}):
                _assert_400(seeded.get(f"/{table}", query_string=args), (table, args))
            _assert_400(seeded.delete(f"/{table}", json={"where": {name: 1}}), (table, name))
    assert snapshot(db_url) == before


WRITES = {
    "user": {"email": "new@x.org", "name": "N"},
    "stores": {"name": "New"},
    "items": {"name": "New", "price": 1.0, "store_id": 1},
}


def test_hostile_names_in_bodies_are_400_and_change_nothing(seeded, db_url):
    before = snapshot(db_url)
    for name in HOSTILE:
        if name == "password":
            continue
        for table, row in WRITES.items():
            for method, path, body in (("POST", f"/{table}", {**row, name: 1}),
                                       ("POST", f"/{table}", [row, {**row, name: "x"}]),
                                       ("PUT", f"/{table}/1", {name: {"x": 1}}),
                                       ("PUT", f"/{table}/50", {**row, name: 1}),
                                       ("PUT", f"/{table}", {"id": 1, name: 1}),
                                       ("PATCH", f"/{table}/1", {name: [1]}),
                                       ("DELETE", f"/{table}", {name: 1})):
                _assert_400(seeded.open(path, method=method, json=body), (method, path, body))
    assert snapshot(db_url) == before


def test_password_is_writable_but_never_a_query_name(seeded, db_url):
    before = snapshot(db_url)
    for query in ({"where": {"password": "pw"}}, {"orderby": "password"}, {"select": ["password"]}):
        error = assert_error(seeded.open("/user", method="FETCH", json=query), 400, "unknown_column")
        assert "password" in error["error"]
    assert snapshot(db_url) == before


# -- no 500 leaks internals --------------------------------------------------------

def test_a_database_failure_never_leaks_sql_or_driver_text(db_url):
    """A table the registry knows but the database lacks makes the driver fail mid-request."""
    ghost = MetaData()
    Table("ghost_table_a", ghost, Column("id", Integer, primary_key=True), Column("name", String(20)))
    app = create_app(Config(database_url=db_url, create_tables=False), metadata=ghost)
    try:
        client = app.test_client()
        for method, path, body in (("GET", "/ghost_table_a", None), ("FETCH", "/ghost_table_a", {"count": True}),
                                   ("POST", "/ghost_table_a", {"name": "x"}), ("GET", "/ghost_table_a/1", None),
                                   ("DELETE", "/ghost_table_a", {"where": {"name": "x"}})):
            response = client.open(path, method=method, json=body)
            assert response.status_code in (500, 503), response.get_data(as_text=True)
            body = assert_error(response, response.status_code, response.get_json()["code"])
            assert body["code"] in ERROR_CODES
            text = response.get_data(as_text=True)
            assert_no_leak(text)
            assert "ghost_table_a" not in body["error"]
    finally:
        app.extensions["tiddly"].db.dispose()


def test_every_documented_code_has_a_status():
    for code, (status, doc) in ERROR_CODES.items():
        assert 400 <= status <= 599 and doc, code
    assert {"unknown_table", "unknown_column", "bad_value", "bad_json", "unique_violation",
            "foreign_key_violation", "method_not_allowed", "payload_too_large", "unsupported_media_type",
            "database_unavailable"} <= set(ERROR_CODES)



def test_unknown_meta_route_is_a_clear_404_not_a_table(client):
    for path in ("/-/nope", "/-/health/extra", "/-"):
        response = client.get(path)
        body = response.get_json()
        assert response.status_code == 404, path
        assert body["status"] == "error"
    body = client.get("/-/nope").get_json()
    assert body["code"] == "not_found"
    assert "/-/health" in body["error"] and "no table named" not in body["error"]
