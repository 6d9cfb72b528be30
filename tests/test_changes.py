"""The change feed (issue #23, docs/changes.md) over real HTTP, against `tiddly serve`, on SQLite,
PostgreSQL and MariaDB: every door's changes arrive once, rolled-back writes never, resume,
410, keys and column policies, revocation, and commit order with transactions that commit in
the other order than they began."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from keys import bearer, keys_cli, new_key
from sse import Stream, changes_after

FAST = {"TIDDLY_CHANGES_KEEPALIVE_S": "1", "TIDDLY_CHANGES_POLL_S": "0.1"}


@pytest.fixture
def server(db_url, live_server_factory):
    return live_server_factory(db_url, workers=2, threads=4, env=FAST)


def _json(method: str, url: str, body=None, **headers) -> requests.Response:
    response = requests.request(method, url, json=body, headers=headers)
    assert response.status_code < 300, response.text
    return response


def test_every_door_arrives_once_in_order(server):
    base = server.url
    stream = Stream(base, "books,patients,patient_readings")
    try:
        book = _json("POST", base + "/books", {"title": "Dune", "author": "Herbert"}).json()["id"]
        _json("PATCH", f"{base}/books/{book}", {"year": 1965})
        _json("PUT", f"{base}/books/{book}", {"title": "Dune", "author": "F. Herbert"})
        bulk = _json("POST", base + "/books", [{"title": "A", "author": "a"},
                                                   {"title": "B", "author": "b"}]).json()["ids"]
        _json("DELETE", f"{base}/books/{bulk[0]}")
        rest = _json("POST", base + "/rest/v1/books", {"title": "Rest", "author": "r"},
                     Prefer="return=representation").json()[0]["id"]
        _json("PATCH", f"{base}/rest/v1/books?id=eq.{rest}", {"year": 2000})
        _json("DELETE", f"{base}/rest/v1/books?id=eq.{rest}")
        imported = requests.post(base + "/books", data="title,author\nCsv,c\n",
                                 headers={"Content-Type": "text/csv"})
        assert imported.status_code < 300, imported.text
        _json("PUT", base + "/patients", {"room_number": 7, "patient_mrn": 700})
        events = stream.wait_for(11)
        csv_id = max(e.data["key"]["id"] for e in events if e.data["table"] == "books")
        books = [e.what for e in events if e.data["table"] == "books"]
        assert books == [("books", "insert", (book,)), ("books", "update", (book,)), ("books", "update", (book,)),
                         ("books", "insert", (bulk[0],)), ("books", "insert", (bulk[1],)),
                         ("books", "delete", (bulk[0],)), ("books", "insert", (rest,)),
                         ("books", "update", (rest,)), ("books", "delete", (rest,)),
                         ("books", "insert", (csv_id,))]
        assert [e.what for e in events if e.data["table"] == "patients"] == [("patients", "insert", (7,))]
        assert events[2].data["row"]["author"] == "F. Herbert" and events[1].data["row"]["year"] == 1965
        assert events[5].data["row"] == {"id": bulk[0]}  # a delete: the key alone
        positions = [int(e.id) for e in events]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert all(e.data["at"].endswith("Z") for e in events)
        assert len(stream.settle(0.5)) == len(events)  # nothing twice
    finally:
        stream.close()


def test_rolled_back_writes_never_appear(server):
    base = server.url
    stream = Stream(base, "books")
    try:
        undone = requests.post(base + "/rest/v1/books", json={"title": "Undone", "author": "u"},
                               headers={"Prefer": "tx=rollback,return=representation"})
        assert undone.status_code == 201, undone.text
        failing = requests.post(base + "/books", json=[{"title": "Fine", "author": "f"}, {"title": "No author"}])
        assert failing.status_code == 400
        marker = _json("POST", base + "/books", {"title": "Marker", "author": "m"}).json()["id"]
        events = stream.settle(1.0)
        assert [e.what for e in events] == [("books", "insert", (marker,))]
    finally:
        stream.close()


def test_resume_after_any_event_gives_the_rest_exactly(server):
    base = server.url
    stream = Stream(base, "dual")
    try:
        ids = []

        def writer(n: int) -> None:
            with requests.Session() as session:
                for i in range(10):
                    ids.append(session.post(base + "/dual", json={"text": f"w{n}-{i}"}).json()["id"])

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = stream.wait_for(40)
        assert sorted(e.data["key"]["id"] for e in events) == sorted(ids)
        for cut in (0, 17, 38):
            rest = changes_after(base, "dual", events[cut].id, 39 - cut)
            assert [e.id for e in rest] == [e.id for e in events[cut + 1:]]
    finally:
        stream.close()


def test_a_position_older_than_the_log_keeps_is_a_410(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=1, env={**FAST, "TIDDLY_CHANGES_RETENTION_S": "1"})
    stream = Stream(server.url, "dual")
    try:
        _json("POST", server.url + "/dual", {"text": "old"})
        first = stream.wait_for(1)[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            gone = requests.get(server.url + "/-/changes", params={"tables": "dual", "after": int(first.id) - 1})
            if gone.status_code == 410:
                break
            gone.close()
            time.sleep(0.3)
        assert gone.status_code == 410
        body = gone.json()
        assert body["code"] == "gone" and "changes_retention_s = 1" in body["error"]
    finally:
        stream.close()


def test_bad_input_is_a_400_in_the_envelope(server):
    base = server.url
    for params, code in (({"tables": "books", "after": "x"}, "bad_query"),
                         ({"tables": "books", "where": "{nope"}, "bad_json"),
                         ({"tables": "books", "where": '{"colour": "red"}'}, "unknown_column"),
                         ({"tables": "books", "where": '{"title": {"fts": "x"}}'}, "unsupported"),
                         ({"tables": ""}, "bad_query"),
                         ({"tables": "books", "after": "999999999"}, "bad_query")):
        response = requests.get(base + "/-/changes", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["code"] == code, (params, response.text)
    assert requests.get(base + "/-/changes", params={"tables": "nope"}).status_code == 404
    assert requests.post(base + "/-/changes?tables=books").status_code == 405


def test_where_narrows_the_feed(server):
    base = server.url
    stream = Stream(base, "books", where='{"author": "keep"}')
    try:
        kept = _json("POST", base + "/books", {"title": "K", "author": "keep"}).json()["id"]
        _json("POST", base + "/books", {"title": "D", "author": "drop"})
        _json("DELETE", f"{base}/books/{kept}")  # a delete carries its key alone: the where cannot test it
        events = stream.wait_for(2)
        assert [e.what for e in stream.settle(0.5)] == [("books", "insert", (kept,)), ("books", "delete", (kept,))]
        assert events[0].data["row"]["author"] == "keep"
    finally:
        stream.close()


def test_keys_see_their_tables_and_columns_and_a_revoked_key_ends(db_url, live_server_factory):
    admin = new_key(db_url, "admin", "admin")
    reader = new_key(db_url, "reader", "read", tables="user")
    server = live_server_factory(db_url, workers=1, env=FAST)
    base = server.url
    assert requests.get(base + "/-/changes", params={"tables": "user"}).status_code == 401
    limited = requests.get(base + "/-/changes", params={"tables": "books"}, headers=bearer(reader))
    assert limited.status_code == 403 and limited.json()["code"] == "forbidden"
    stream = Stream(base, "user", bearer(reader))
    by_query = Stream(base, "user", access_token=admin)
    try:
        made = requests.post(base + "/user", json={"email": "a@example.com", "password": "secret-pw", "name": "A"},
                             headers=bearer(admin))
        assert made.status_code == 201, made.text
        event = stream.wait_for(1)[0]
        assert set(event.data["row"]) == {"id", "email", "name"}  # the write-only password never
        assert by_query.wait_for(1)[0].id == event.id
        assert keys_cli(db_url, "revoke", "reader").exit_code == 0
        assert stream.ended.wait(10), "the revoked key's stream did not end"
        assert not by_query.ended.is_set()
    finally:
        stream.close()
        by_query.close()


def test_idle_streams_get_keep_alive_comments(server):
    stream = Stream(server.url, "books")
    try:
        time.sleep(2.5)
        assert "keep-alive" in stream.comments
    finally:
        stream.close()
