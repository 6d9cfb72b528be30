"""Hardening, round 3 (issue 20), the items not about the server layer or the request bounds:
over real HTTP or the app, on every database."""
from __future__ import annotations

import random
import threading

import pytest
import requests
from envelope import assert_error, ok

from tiddly import create_app
from tiddly.config import Config

HIGHEST_INT = 2147483647


@pytest.fixture
def client(db_url):
    app = create_app(Config(database_url=db_url))
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()


def test_no_request_leaves_a_table_unable_to_take_inserts(client):
    """Item 6: PUT /dual/2147483647 moved the sequence (AUTO_INCREMENT) to its end, and every
    later insert failed. A chosen key may lie at most max_key_gap above the highest."""
    ok(client.post("/dual", json={"text": "first"}), 201)
    error = assert_error(client.put(f"/dual/{HIGHEST_INT}", json={"text": "last"}), 400, "bad_value")
    assert "TIDDLY_MAX_KEY_GAP" in error["error"] and "at most 10000 above the highest (1)" in error["error"]
    rest = client.put(f"/rest/v1/dual?id=eq.{HIGHEST_INT}", json={"id": HIGHEST_INT, "text": "last"})
    assert rest.status_code == 400 and rest.get_json()["code"] == "22P02"
    ok(client.put("/dual/5", json={"text": "five"}), 201)  # the 2017 client's PUT /dual/5 still creates
    created = ok(client.post("/dual", json={"text": "after"}), 201)
    assert created["id"] == 6  # the generator moved past 5, and no further
    assert [row["id"] for row in ok(client.get("/dual"))["data"]] == [1, 5, 6]


def test_no_insert_of_any_door_may_choose_a_key_at_the_end_of_its_type(client):
    """Item 6, every insert: a POST (one row, a bulk array, /rest/v1, an upsert, a CSV import)
    choosing the generated key at the end of its type would leave MariaDB's AUTO_INCREMENT (and
    SQLite's rowid) there; nothing is stored, and the table still takes inserts."""
    ok(client.post("/dual", json={"text": "first"}), 201)
    far = {"id": HIGHEST_INT, "text": "last"}
    assert client.post("/dual", json=far).status_code == 400  # Tiddly's API: a generated key is read-only
    assert client.post("/dual", json=[{"text": "a"}, far]).status_code == 400
    assert client.post("/dual", data=f"id,text\n{HIGHEST_INT},csv\n", headers={"Content-Type": "text/csv"}).status_code == 400
    refused = client.post("/rest/v1/dual", json=[far])
    assert refused.status_code == 400 and "TIDDLY_MAX_KEY_GAP" in refused.get_json()["message"]
    upserted = client.post("/rest/v1/dual?on_conflict=id", json=[far],
                           headers={"Prefer": "resolution=merge-duplicates"})
    assert upserted.status_code == 400
    assert [row["id"] for row in ok(client.get("/dual"))["data"]] == [1]
    assert client.post("/rest/v1/dual", json=[{"id": 20, "text": "near"}]).status_code == 201
    assert ok(client.post("/dual", json={"text": "after"}), 201)["id"] in (2, 21)


def test_a_key_gap_is_a_setting(db_url):
    app = create_app(Config(database_url=db_url, max_key_gap=3))
    client = app.test_client()
    ok(client.put("/dual/3", json={"text": "three"}), 201)
    assert_error(client.put("/dual/7", json={"text": "seven"}), 400, "bad_value")
    ok(client.put("/dual/6", json={"text": "six"}), 201)
    app.extensions["tiddly"].db.dispose()


def test_concurrent_ignore_duplicates_store_every_row(db_url, live_server_factory):
    """Item 7: 48 concurrent POST /rest/v1/user?on_conflict=email with ignore-duplicates, racing to
    insert the same 49 users, deadlocked on MariaDB (10-26 answered 503, 23 of 49 rows stored)."""
    server = live_server_factory(db_url, workers=2, threads=24)
    existing = [{"email": f"user{k}@example.com"} for k in range(0, 49, 2)]
    assert requests.post(server.url + "/user", json=existing).status_code == 201
    statuses, barrier = [], threading.Barrier(48)

    def upsert(n: int) -> None:
        rows = [{"email": f"user{k}@example.com"} for k in range(49)]
        random.Random(n).shuffle(rows)
        barrier.wait()
        response = requests.post(server.url + "/rest/v1/user?on_conflict=email", json=rows,
                                 headers={"Prefer": "resolution=ignore-duplicates"}, timeout=60)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=upsert, args=(n,)) for n in range(48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 48
    emails = {u["email"] for u in requests.get(server.url + "/user?limit=100").json()["data"]}
    assert len(emails) == 49


def test_postgrest_writes_hold_if_match_as_tiddly_api_does(client):
    """Item 10: /rest/v1 PATCH and DELETE ignored If-Match (204, written); the same conditional
    rules now hold on both dialects."""
    created = client.post("/books", json={"title": "Dune", "author": "Herbert"})
    etag = created.headers["ETag"]
    stale = {"If-Match": '"0123456789abcdef0123456789abcdef"'}
    for method in ("PATCH", "DELETE"):
        response = client.open("/rest/v1/books?id=eq.1", method=method, json={"title": "X"}, headers=stale)
        assert response.status_code == 412 and response.get_json()["code"] == "PGRST100", response.get_data()
    assert ok(client.get("/books/1"))["data"]["title"] == "Dune"
    by_filter = client.patch("/rest/v1/books?title=eq.Dune", json={"title": "X"}, headers={"If-Match": etag})
    assert by_filter.status_code == 400  # a condition needs a write of one row by its key, as on /books/1
    assert client.patch("/rest/v1/books?id=eq.1", json={"title": "Dune!"}, headers={"If-Match": etag}).status_code == 204
    assert client.put("/rest/v1/books?id=eq.1", json={"id": 1, "title": "Y", "author": "Z"},
                      headers={"If-None-Match": "*"}).status_code == 412
    assert ok(client.get("/books/1"))["data"]["title"] == "Dune!"
    assert client.delete("/rest/v1/books?id=eq.1", headers={"If-Match": "*"}).status_code == 204
    assert ok(client.get("/books"))["data"] == []


def test_a_bare_count_reads_its_table(client):
    """Item 8: FETCH /user {"aggregate": {"n": "count"}} answered 1 (the statement had no FROM)."""
    assert ok(client.open("/user", method="FETCH", json={"aggregate": {"n": "count"}}))["data"] == [{"n": 0}]
    ok(client.post("/user", json=[{"email": f"u{n}@example.com"} for n in range(3)]), 201)
    assert ok(client.open("/user", method="FETCH", json={"aggregate": {"n": "count"}}))["data"] == [{"n": 3}]


@pytest.mark.parametrize("select", ["*,pw:password", "*,x:nosuch", "*,nosuch", "password", "id,items(secret)"])
def test_a_hidden_or_unknown_column_in_select_is_42703(client, select):
    """Item 11: select=*,pw:password and *,x:nosuch answered 500, *,nosuch 200 (the name dropped)."""
    response = client.get(f"/rest/v1/user?select={select}") if "items" not in select else \
        client.get(f"/rest/v1/stores?select={select}")
    assert response.status_code == 400, response.get_data()
    body = response.get_json()
    assert body["code"] == "42703" and set(body) == {"code", "message", "details", "hint"}
    assert "password" not in str(body["details"] or "") or "no column" in body["message"]


def test_percent_escapes_that_are_not_utf8_are_a_400(client):
    """Item 14: title=eq.%ff silently became U+FFFD."""
    body = client.get("/rest/v1/books?title=eq.%ff").get_json()
    assert body["code"] == "PGRST100" and "UTF-8" in body["message"]
    assert_error(client.get("/books?where=%7B%22title%22%3A%22%ff%22%7D"), 400, "bad_query")
    assert_error(client.get("/books/%ff"), 400, "bad_query")
    assert client.get("/rest/v1/books?title=eq.%C3%A9t%C3%A9").status_code == 200


def test_an_integer_past_64_bits_is_never_rounded_into_range(client):
    """Item 14: on SQLite an id of -9223372036854775809 was accepted (JSON carried it as a float)."""
    for value in (-9223372036854775809, 9223372036854775808, 2**70):
        assert_error(client.put("/dual", json={"id": value, "text": "x"}), 400, "bad_value")
    assert ok(client.get("/dual"))["data"] == []


def test_a_csv_header_with_a_byte_order_mark_imports(client):
    """Item 14: a UTF-8 BOM before the CSV header was refused as column '\\ufefftitle'."""
    body = "\ufefftitle,author\nDune,Herbert\n".encode()
    assert ok(client.post("/books", data=body, headers={"Content-Type": "text/csv"}), 201)["count"] == 1
    rest = client.post("/rest/v1/books", data=body, headers={"Content-Type": "text/csv"})
    assert rest.status_code == 201
    assert [b["title"] for b in ok(client.get("/books"))["data"]] == ["Dune", "Dune"]
