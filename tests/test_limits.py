"""What one request may build (issue 20 items 4 and 12): every bound is a clear 400 naming it,
on both dialects and every database, never a 503 from the database's own limits, never an
answer that grows without bound."""
from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import requests
from envelope import assert_error, ok

from tiddly import create_app
from tiddly.config import Config

EMBED_PROBE = "id,items(id,stores(id,items(id,stores(id,items(id,stores(id,items(id)))))))"


@pytest.fixture
def client(db_url):
    app = create_app(Config(database_url=db_url))
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()


def _postgrest_error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"code", "message", "details", "hint"}
    return body


def test_thousands_of_or_terms_are_a_400_naming_the_bound(client):
    ok(client.post("/books", json={"title": "T", "author": "A"}), 201)
    many = ",".join(f"id.eq.{n}" for n in range(6000))
    body = _postgrest_error(client.get(f"/rest/v1/books?or=({many})"), 400)
    assert "TIDDLY_MAX_CONDITIONS" in body["message"]
    native = {"where": {"or": [{"id": n} for n in range(1200)]}}
    error = assert_error(client.open("/books", method="FETCH", json=native), 400, "bad_query")
    assert "at most 500" in error["error"] and "TIDDLY_MAX_CONDITIONS" in error["error"]


def test_any_all_lists_have_the_in_bound(client):
    values = ",".join(str(n) for n in range(8000))
    for op in ("eq(any)", "neq(all)", "in"):
        wrapped = f"{{{values}}}" if "(" in op else f"({values})"
        body = _postgrest_error(client.get(f"/rest/v1/books?id={op}.{wrapped}"), 400)
        assert "at most 1000" in body["message"], body


def test_thousands_of_order_terms_are_a_400(client):
    terms = ",".join(["title.desc", "author"] * 2500)
    body = _postgrest_error(client.get(f"/rest/v1/books?order={terms}"), 400)
    assert "TIDDLY_MAX_ORDER_TERMS" in body["message"]
    error = assert_error(client.open("/books", method="FETCH", json={"orderby": terms.replace(".", " ")}),
                         400, "bad_query")
    assert "TIDDLY_MAX_ORDER_TERMS" in error["error"]


def test_many_values_in_many_lists_are_bounded_too(client):
    where = {"and": [{"id": {"in": list(range(n * 1000, n * 1000 + 1000))}} for n in range(11)]}
    error = assert_error(client.open("/books", method="FETCH", json={"where": where}), 400, "bad_query")
    assert "TIDDLY_MAX_FILTER_VALUES" in error["error"]


def test_bounds_are_settings(db_url):
    app = create_app(Config(database_url=db_url, max_conditions=3, max_order_terms=2))
    client = app.test_client()
    ok(client.open("/books", method="FETCH", json={"where": {"or": [{"id": 1}, {"id": 2}, {"id": 3}]}}))
    assert_error(client.open("/books", method="FETCH", json={"where": {"or": [{"id": n} for n in range(4)]}}),
                 400, "bad_query")
    assert_error(client.get("/books?orderby=title,author,year"), 400, "bad_query")
    app.extensions["tiddly"].db.dispose()


def test_embeds_that_multiply_are_a_400_not_a_gigabyte(db_url, live_server_factory):
    """The issue's probe: one read-key GET of ~80 characters over one store with 100 items
    answered 1.03 GB in 18.7 s. Now a 400 naming the bound, at once."""
    server = live_server_factory(db_url, workers=1, threads=2)
    store = requests.post(server.url + "/stores", json={"name": "S"}).json()["id"]
    items = [{"name": f"i{n}", "price": 1, "store_id": store} for n in range(100)]
    assert requests.post(server.url + "/items", json=items).status_code == 201
    started = time.monotonic()
    response = requests.get(f"{server.url}/rest/v1/stores?select={quote(EMBED_PROBE)}", timeout=60)
    assert response.status_code == 400, response.text[:300]
    assert "TIDDLY_MAX_EMBEDDED_ROWS" in response.json()["message"]
    assert time.monotonic() - started < 10 and len(response.content) < 2000
    within = requests.get(f"{server.url}/rest/v1/stores?select=id,items(id,stores(id))")  # 100 + 100 rows: fine
    assert within.status_code == 200 and len(within.json()[0]["items"]) == 100


def test_the_embedded_rows_bound_holds_for_tiddly_includes(db_url):
    app = create_app(Config(database_url=db_url, max_embedded_rows=50))
    client = app.test_client()
    store = ok(client.post("/stores", json={"name": "S"}), 201)["id"]
    ok(client.post("/items", json=[{"name": f"i{n}", "price": 1, "store_id": store} for n in range(60)]), 201)
    error = assert_error(client.open("/stores", method="FETCH", json={"include": ["items"]}), 400, "result_too_large")
    assert "more than 50 related rows" in error["error"]
    page = ok(client.open("/stores", method="FETCH", json={"include": {"items": {"limit": 40}}}))
    assert len(page["data"][0]["items"]) == 40
    app.extensions["tiddly"].db.dispose()


def test_embeds_nest_no_deeper_than_the_bound(db_url):
    app = create_app(Config(database_url=db_url, max_embed_depth=2))
    client = app.test_client()
    body = _postgrest_error(client.get(f"/rest/v1/stores?select={quote('id,items(id,stores(id,items(id)))')}"), 400)
    assert "TIDDLY_MAX_EMBED_DEPTH" in body["message"]
    assert client.get(f"/rest/v1/stores?select={quote('id,items(id,stores(id))')}").status_code == 200
    app.extensions["tiddly"].db.dispose()


def test_thousands_of_aliases_in_one_select_are_a_400(client):
    """Issue 20 item 4: 5,800 aliases in one select answered 103 MB."""
    ok(client.post("/books", json={"title": "T", "author": "A"}), 201)
    aliases = ",".join(f"a{n}:title" for n in range(5800))
    body = _postgrest_error(client.get(f"/rest/v1/books?select={aliases}"), 400)
    assert "TIDDLY_MAX_SELECT_ITEMS" in body["message"]
    fine = client.get("/rest/v1/books?select=" + ",".join(f"a{n}:title" for n in range(100)))
    assert fine.status_code == 200 and len(fine.get_json()[0]) == 100
