"""The change feed (issue #23, docs/changes.md) over real HTTP, against `tiddly serve`, on SQLite,
PostgreSQL and MariaDB: every door's changes arrive once, rolled-back writes never, resume,
410, keys and column policies, revocation, and commit order with transactions that commit in
the other order than they began."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from keys import bearer, keys_cli, new_key
from sse import Stream, changes_after

from tiddly import create_app
from tiddly.cli import main
from tiddly.config import Config
from tiddly.errors import Unauthorized, UnknownTable
from tiddly.web.feed import Event, authenticate, listen
from tiddly.web.native import call_in_thread

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
            gone = requests.get(server.url + "/-/changes", params={"tables": "dual", "after": int(first.id) - 1},
                                stream=True, timeout=5)
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


def test_an_open_mode_stream_ends_when_the_first_key_is_made(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=1, env=FAST)
    stream = Stream(server.url, "books")  # no key exists: open mode
    try:
        assert requests.post(server.url + "/books", json={"title": "Open", "author": "A"}).status_code == 201
        assert stream.wait_for(1)[0].data["row"]["title"] == "Open"
        new_key(db_url, "first", "write")
        assert stream.ended.wait(10), "the open-mode stream outlived open mode"
    finally:
        stream.close()


def test_idle_streams_get_keep_alive_comments(server):
    stream = Stream(server.url, "books")
    try:
        time.sleep(2.5)
        assert "keep-alive" in stream.comments
    finally:
        stream.close()


def test_transactions_committing_in_reverse_order_lose_nothing_on_resume(db_url, live_server_factory):
    """The first transaction to begin commits last: its change comes after the other's, and a
    reader that resumes after the other's event still gets it (positions are in commit order)."""
    server = live_server_factory(db_url, workers=1, env=FAST)
    stream = Stream(server.url, "dual")
    app = create_app(Config(database_url=db_url, create_tables=False))
    held, entered = threading.Event(), threading.Event()

    def hold(session, changes):  # runs in the write's transaction, before its change is logged
        if threading.current_thread().name == "first":
            entered.set()
            held.wait(10)

    app.extensions["tiddly"].executor._in_transaction.insert(0, hold)
    client = app.test_client()
    answers = {}

    def write(name: str) -> None:
        answers[name] = client.post("/dual", json={"text": name}).get_json()["id"]

    first = threading.Thread(target=write, args=("first",), name="first")
    second = threading.Thread(target=write, args=("second",), name="second")
    try:
        first.start()
        assert entered.wait(10)
        second.start()
        second.join(2)  # SQLite has one writer: the second waits for the first (same order then)
        if "second" in answers:
            early = stream.wait_for(1)
            assert [e.data["key"]["id"] for e in early] == [answers["second"]]
        resume_from = stream.events[-1].id if stream.events else None
        held.set()
        first.join(10)
        second.join(10)
        events = stream.wait_for(2)
        assert sorted(e.data["key"]["id"] for e in events) == sorted(answers.values())
        if resume_from is not None:
            assert [e.data["key"]["id"] for e in changes_after(server.url, "dual", resume_from, 1)] == [answers["first"]]
        assert len(stream.settle(0.5)) == 2
    finally:
        held.set()
        stream.close()
        app.extensions["tiddly"].db.dispose()


def test_outside_writes_after_enable_and_none_after_disable(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=2, env=FAST)  # it makes the schema
    assert _cli(db_url, "enable", "books").exit_code == 0
    stream = Stream(server.url, "books")
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:  # another program: psql, mysql, sqlite3, an app
            connection.execute(text("INSERT INTO books (title, author) VALUES ('Outside', 'o')"))
        with engine.begin() as connection:
            outside = connection.execute(text("SELECT id FROM books WHERE title = 'Outside'")).scalar_one()
            connection.execute(text("UPDATE books SET year = 1999 WHERE id = :id"), {"id": outside})
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM books WHERE id = :id"), {"id": outside})
        with engine.begin() as connection:  # rolled back: never logged
            connection.execute(text("INSERT INTO books (title, author) VALUES ('Undone', 'u')"))
            connection.rollback()
        inside = _json("POST", server.url + "/books", {"title": "Inside", "author": "i"}).json()["id"]
        events = stream.wait_for(4)
        assert [e.what for e in stream.settle(1.0)] == [
            ("books", "insert", (outside,)), ("books", "update", (outside,)), ("books", "delete", (outside,)),
            ("books", "insert", (inside,))]  # Tiddly's own write on a triggered table: once
        assert events[1].data["row"]["year"] == 1999 and events[1].data["row"]["title"] == "Outside"

        assert _cli(db_url, "disable", "books").exit_code == 0
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO books (title, author) VALUES ('Unseen', 'u')"))
        after = _json("POST", server.url + "/books", {"title": "Seen", "author": "s"}).json()["id"]
        assert [e.what for e in stream.wait_for(5)[4:]] == [("books", "insert", (after,))]
        assert len(stream.settle(1.0)) == 5
        with engine.connect() as connection:
            assert not _trigger_names(connection)
    finally:
        CliRunner().invoke(main, ["changes", "disable", "books", "--database-url", db_url])
        stream.close()
        engine.dispose()


def _cli(db_url: str, *args: str):
    result = CliRunner().invoke(main, ["changes", *args, "--database-url", db_url])
    assert result.exit_code == 0, result.output
    return result


def _trigger_names(connection) -> list[str]:
    name = connection.dialect.name
    query = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger'",
             "postgresql": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
             }.get(name, "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()")
    return [r[0] for r in connection.execute(text(query)) if r[0].startswith("tiddly_changes")]


def test_listen_in_python_yields_events_and_checks_first(db_url):
    """web/feed.py's ``listen``, as another protocol (Realtime) uses it on its own event loop."""
    app = create_app(Config(database_url=db_url))
    client = app.test_client()

    async def scenario():
        principal = await authenticate(app, call_in_thread, None)  # open mode
        with pytest.raises(UnknownTable):
            await listen(app, call_in_thread, principal, ["nope"]).__anext__()
        events = listen(app, call_in_thread, principal, ["books"], where={"author": "kept"})
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.5)
        await call_in_thread(client.post, "/books", json={"title": "No", "author": "dropped"})
        made = (await call_in_thread(client.post, "/books", json={"title": "Yes", "author": "kept"})).get_json()["id"]
        event = await asyncio.wait_for(first, 10)
        await events.aclose()
        return made, event

    try:
        made, event = asyncio.run(scenario())
        assert isinstance(event, Event)
        assert (event.table, event.op, event.key, event.row["title"]) == ("books", "insert", {"id": made}, "Yes")
        assert event.position.isdigit() and event.at.endswith("Z")
    finally:
        app.extensions["tiddly"].db.dispose()


def test_authenticate_takes_headers_a_header_value_or_a_bare_key(db_url):
    app = create_app(Config(database_url=db_url))
    secret = new_key(db_url, "native", "read")
    try:
        for credentials in ([(b"authorization", f"Bearer {secret}".encode())], [("Authorization", f"Bearer {secret}")],
                            {"authorization": f"Bearer {secret}"}, f"Bearer {secret}", secret):
            principal = asyncio.run(authenticate(app, call_in_thread, credentials))
            assert (principal.kind, principal.name, principal.scope) == ("key", "native", "read"), credentials
        for refused in (None, [(b"authorization", b"Bearer tdk_wrong")], [(b"x-other", b"1")]):
            with pytest.raises(Unauthorized):
                asyncio.run(authenticate(app, call_in_thread, refused))
    finally:
        app.extensions["tiddly"].db.dispose()
