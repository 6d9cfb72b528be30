"""Related rows through declared relationships: one query per relationship, whatever the page size."""
from __future__ import annotations

import contextlib

import pytest
from envelope import assert_error, ok
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tiddly.services import auth

STORES, ITEMS_EACH = 12, 4


@pytest.fixture
def shop(client):
    ok(client.post("/stores", json=[{"name": f"store {s}"} for s in range(1, STORES + 1)]), 201)
    # store s gets items priced s*10+0 .. s*10+3; store 12 gets none
    items = [{"name": f"item {s}.{i}", "price": s * 10 + i, "store_id": s}
             for s in range(1, STORES) for i in range(ITEMS_EACH)]
    ok(client.post("/items", json=items), 201)
    return client


@contextlib.contextmanager
def statements():
    seen = []
    engine = Engine  # every engine: read scopes run on one of their own, beside db.engine

    def count(conn, cursor, statement, *args):
        # the shop's tables only: the gateway's own lookups (API keys) are not the page's cost
        if statement.lstrip().upper().startswith("SELECT") and ("stores" in statement or "items" in statement):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def fetch(client, table, body):
    return client.open(f"/{table}", method="FETCH", json=body)


@pytest.mark.parametrize("limit", [1, 5, STORES])
def test_one_to_many_costs_one_query_whatever_the_page(app, shop, limit):
    with statements() as seen:
        data = ok(fetch(shop, "stores", {"include": ["items"], "limit": limit}))["data"]
    assert len(seen) == 2  # the page, and all of its items
    assert len(data) == limit
    for store in data:
        expected = [] if store["id"] == STORES else [f"item {store['id']}.{i}" for i in range(ITEMS_EACH)]
        assert [item["name"] for item in store["items"]] == expected


def test_many_to_one_and_options(app, shop):
    with statements() as seen:
        data = ok(fetch(shop, "items", {"include": {"store": {"select": ["name"]}}, "select": ["name"],
                                        "orderby": "price desc", "limit": 6}))["data"]
    assert len(seen) == 2
    assert data[0] == {"name": "item 11.3", "store": {"name": "store 11"}}
    assert all(set(row) == {"name", "store"} for row in data)  # the join key is not leaked
    filtered = ok(fetch(shop, "items", {"include": {"store": {"where": {"name": "store 1"}}}, "limit": 8}))
    assert [row["store"] is None for row in filtered["data"]] == [False] * 4 + [True] * 4


def test_per_parent_limit_where_and_orderby(app, shop):
    body = {"include": {"items": {"where": {"price": {"gte": 21}}, "orderby": "price desc", "limit": 2,
                                  "select": ["price"]}}, "orderby": "id", "limit": 4}
    with statements() as seen:
        data = ok(fetch(shop, "stores", body))["data"]
    assert len(seen) == 2
    assert [store["items"] for store in data] == [
        [], [{"price": 23.0}, {"price": 22.0}], [{"price": 33.0}, {"price": 32.0}],
        [{"price": 43.0}, {"price": 42.0}]]


def test_include_over_get_and_beside_select_and_count(shop):
    body = ok(shop.get("/stores?include=items&select=name&limit=2&count=true"))
    assert body["count"] == STORES
    assert [len(s["items"]) for s in body["data"]] == [ITEMS_EACH, ITEMS_EACH]
    assert set(body["data"][0]) == {"name", "items"}


def test_bad_includes_are_400s(shop):
    for bad in (["nope"], {"items": {"limit": -1}}, {"items": {"wher": {}}}, {"items": {"where": {"x": 1}}},
                {"items": 5}, 7, [], {"items": {"include": ["store"]}}):
        response = fetch(shop, "stores", {"include": bad})
        assert response.status_code == 400, (bad, response.get_json())
    assert_error(fetch(shop, "items", {"include": {"store": {"limit": 1}}}), 400, "bad_query")
    assert_error(fetch(shop, "books", {"include": ["items"]}), 400, "bad_query")


# -- nested insert ---------------------------------------------------------------

def test_nested_insert_writes_the_row_and_its_items(client):
    body = ok(client.post("/stores", json={"name": "Corner", "items": [
        {"name": "tea", "price": 2.5}, {"name": "jam", "price": 4, "store_id": 1}]}), 201)
    assert body["id"] == 1
    assert body["data"]["name"] == "Corner"
    assert [(i["name"], i["store_id"]) for i in body["data"]["items"]] == [("tea", 1), ("jam", 1)]
    stored = ok(fetch(client, "stores", {"include": ["items"]}))["data"]
    assert [i["name"] for i in stored[0]["items"]] == ["tea", "jam"]
    assert ok(client.post("/stores", json={"name": "Empty", "items": []}), 201)["data"]["items"] == []


@pytest.mark.parametrize("items, column", [
    ([{"name": "tea", "price": 1}, {"name": "no price"}], "price"),
    ([{"name": "tea", "price": 1}, {"name": "x", "price": "cheap"}], "price"),
    ([{"name": "tea", "price": 1, "store_id": 99}], "store_id"),
    ([{"name": "tea", "price": 1}, "tea"], None),
])
def test_a_bad_item_leaves_no_store_behind(client, items, column):
    body = assert_error(client.post("/stores", json={"name": "Doomed", "items": items}), 400,
                        "bad_value" if column != "price" or "cheap" in str(items) else "missing_column")
    assert body["error"].startswith("items: item")
    assert body["details"]["index"] == len(items) - 1
    assert ok(fetch(client, "stores", {"count": True}))["count"] == 0
    assert ok(fetch(client, "items", {"count": True}))["count"] == 0


def test_nested_insert_refuses_what_it_cannot_do(client):
    assert_error(client.post("/stores", json={"name": "S", "items": {"name": "x"}}), 400, "bad_value")
    store = ok(client.post("/stores", json={"name": "S"}), 201)["id"]  # a sequence may have moved on
    response = client.post("/items", json={"name": "x", "price": 1, "store_id": store, "store": {"name": "T"}})
    assert_error(response, 400, "bad_value")
    assert ok(fetch(client, "stores", {"count": True}))["count"] == 1


def test_a_key_limited_to_stores_cannot_reach_items_through_them(app, client):
    """To a key limited to stores, stores has no relation to items: the same 400 as for a relation
    that does not exist at all, so the key learns nothing of a table it may not use."""
    with app.extensions["tiddly"].db.session(write=True) as session:
        key = auth.create_key(session, "stores only", "write", ["stores"])
    headers = {"Authorization": f"Bearer {key}"}
    ok(client.post("/stores", json={"name": "S"}, headers=headers), 201)
    for response in (client.open("/stores", method="FETCH", json={"include": ["items"]}, headers=headers),
                     client.get("/stores?include=items", headers=headers)):
        assert assert_error(response, 400, "bad_query")["error"].endswith("known: none")
    response = client.post("/stores", json={"name": "T", "items": [{"name": "x", "price": 1}]}, headers=headers)
    assert_error(response, 400, "unknown_column")
    assert [s["name"] for s in ok(client.get("/stores", headers=headers))["data"]] == ["S"]
