"""Supabase Realtime (issue 24): the real supabase-js, ``supabase.channel(...).on('postgres_changes',
{event, schema, table, filter}, handler).subscribe()``, against a real `tiddly serve` (two workers:
a change written through one reaches sockets on the other) on every database.

tests/clients/realtime.mjs holds the clients and channels and reports what their handlers got;
the rows are written through Tiddly's own API. supabase-js 2.119 (the version the other client
tests pin) with its default serializer unless a test says otherwise; 2.109 and vsn=1.0.0 too.
Each test writes books of an author of its own, and its channels filter on it or leave before
the next test writes.
"""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from conftest import DATABASES, clean_database
from keys import keys_cli, new_key
from nodejs import node_command
from realtime_driver import Realtime
from serving import LiveServer

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module", params=DATABASES)
def live(request, tmp_path_factory, prepared_servers):
    """One server and one node process per database, with keys of every kind the tests need."""
    url = clean_database(request.param, tmp_path_factory.mktemp("realtime"), prepared_servers)
    keys = {"write": new_key(url, "app"), "read": new_key(url, "reader", "read"),
            "books_only": new_key(url, "books-only", "write", "books"),
            "doomed": new_key(url, "doomed", "read"), "wrong": "tdk_" + "x" * 43}
    server = LiveServer(url, workers=2, threads=2)
    node = Realtime(node_command("realtime.mjs"), server.url)
    for name, key in keys.items():
        node.client(name, key)
    node.client("write_v1", keys["write"], vsn="1.0.0")
    node.client("write_2109", keys["write"], lib="2.109")
    node.client("write_2109_v1", keys["write"], lib="2.109", vsn="1.0.0")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {keys['write']}"
    try:
        yield SimpleNamespace(url=url, base=server.url, keys=keys, node=node, http=http)
    finally:
        http.close()
        errors = node.close()
        output = server.stop()
    assert "Traceback" not in output, output[-4000:]
    assert "Error" not in errors, errors[-4000:]


# -- helpers ----------------------------------------------------------------------------------

def books(author: str, event: str = "*", **extra) -> dict:
    """A binding on the books of one author (each test writes books of its own author)."""
    return {"event": event, "schema": "public", "table": "books", "filter": f"author=eq.{author}", **extra}


def insert(live, table: str, row: dict) -> dict:
    response = live.http.post(f"{live.base}/{table}", json=row)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def update(live, table: str, key, values: dict) -> dict:
    response = live.http.patch(f"{live.base}/{table}/{key}", json=values)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def delete(live, table: str, key) -> None:
    response = live.http.delete(f"{live.base}/{table}/{key}")
    assert response.status_code in (200, 204), response.text


def subscribed(live, client: str, channel: str, bindings: list[dict], **options) -> None:
    status = live.node.subscribe(client, channel, bindings, **options)
    assert status["status"] == "SUBSCRIBED", status


def refused(live, client: str, channel: str, bindings: list[dict], **options) -> str:
    """The message of the CHANNEL_ERROR a join gets."""
    status = live.node.subscribe(client, channel, bindings, **options)
    assert status["status"] == "CHANNEL_ERROR", status
    return status["error"]


def leave(live, channel: str) -> None:
    live.node.do("unsubscribe", channel=channel)
    done = live.node.expect(lambda r: r["kind"] == "done" and r["channel"] == channel)
    assert done["result"] == "ok", done


def check_payload(payload: dict, event: str, new: dict, old: dict, table: str = "books") -> None:
    assert payload["eventType"] == event
    assert (payload["schema"], payload["table"]) == ("public", table)
    assert payload["new"] == new
    assert payload["old"] == old
    assert payload["errors"] is None
    assert ISO_UTC.match(payload["commit_timestamp"]), payload["commit_timestamp"]


# -- changes reach the right handlers with the right payloads ----------------------------------

@pytest.mark.parametrize("client", ["write", "write_v1", "write_2109", "write_2109_v1"])
def test_insert_update_delete_reach_their_handlers(live, client):
    author = f"Handlers {client}"
    channel = f"handlers-{client}"
    subscribed(live, client, channel, [books(author, "INSERT"), books(author, "UPDATE"), books(author, "DELETE")])
    row = insert(live, "books", {"title": "Dune", "author": author, "year": 1965})
    changed = update(live, "books", row["id"], {"year": 1966})
    delete(live, "books", row["id"])
    inserted, updated, deleted = live.node.changes(channel, 3)
    assert [inserted["binding"], updated["binding"], deleted["binding"]] == [0, 1, 2]
    check_payload(inserted["payload"], "INSERT", row, {})
    check_payload(updated["payload"], "UPDATE", changed, {"id": row["id"]})
    check_payload(deleted["payload"], "DELETE", {}, {"id": row["id"]})
    assert changed["year"] == 1966
    assert live.node.quiet(channel, 0.5) == []  # each change once, to its own handler only
    leave(live, channel)


def test_star_gets_every_change_in_commit_order(live):
    author = "Star"
    subscribed(live, "write", "star", [books(author)])
    first = insert(live, "books", {"title": "One", "author": author, "year": 1})
    second = insert(live, "books", {"title": "Two", "author": author, "year": 2})
    update(live, "books", first["id"], {"title": "One again"})
    delete(live, "books", second["id"])
    got = [c["payload"] for c in live.node.changes("star", 4)]
    assert [(p["eventType"], (p["new"] or p["old"])["id"]) for p in got] == [
        ("INSERT", first["id"]), ("INSERT", second["id"]), ("UPDATE", first["id"]), ("DELETE", second["id"])]
    assert got[2]["new"]["title"] == "One again"
    assert [p["commit_timestamp"] for p in got] == sorted(p["commit_timestamp"] for p in got)
    leave(live, "star")


def test_a_system_message_says_the_channel_listens(live):
    subscribed(live, "write", "system", [books("System")])
    system = live.node.expect(lambda r: r["kind"] == "system" and r["channel"] == "system")
    assert system["payload"]["status"] == "ok" and system["payload"]["extension"] == "postgres_changes"
    leave(live, "system")


# -- filters ----------------------------------------------------------------------------------

YEAR_FILTERS = ["year=eq.1965", "year=neq.1965", "year=lt.1900", "year=lte.1900", "year=gt.1965",
                "year=gte.1965", "year=in.(1815,1989)"]


def test_each_filter_operator(live):
    author = "Filters"
    bindings = [{"event": "INSERT", "schema": "public", "table": "books", "filter": f}
                for f in YEAR_FILTERS]
    subscribed(live, "write", "filters", bindings)
    years = [1815, 1900, 1965, 1989]
    for year in years:
        insert(live, "books", {"title": f"Year {year}", "author": author, "year": year})
    expected = {0: [1965], 1: [1815, 1900, 1989], 2: [1815], 3: [1815, 1900], 4: [1989], 5: [1965, 1989],
                6: [1815, 1989]}
    got = live.node.changes("filters", sum(len(v) for v in expected.values()))
    by_binding: dict = {}
    for change in got:
        by_binding.setdefault(change["binding"], []).append(change["payload"]["new"]["year"])
    assert by_binding == expected
    assert live.node.quiet("filters", 0.5) == []
    leave(live, "filters")


def test_filters_on_text_with_spaces_commas_and_quotes(live):
    author = "Jane Q. Public"
    subscribed(live, "write", "text-filters", [
        {"event": "INSERT", "schema": "public", "table": "books", "filter": f"author=eq.{author}"},
        {"event": "INSERT", "schema": "public", "table": "books", "filter": 'title=in.("Tales, Old and New",Dune)'},
    ])
    insert(live, "books", {"title": "Tales, Old and New", "author": author})
    insert(live, "books", {"title": "Other", "author": "Someone else"})
    got = live.node.changes("text-filters", 2)
    assert sorted((c["binding"], c["payload"]["new"]["title"]) for c in got) == [
        (0, "Tales, Old and New"), (1, "Tales, Old and New")]
    assert live.node.quiet("text-filters", 0.5) == []
    leave(live, "text-filters")


def test_like_ilike_is_isdistinct_not_and_several_conditions(live):
    """What realtime-js 2.119's filter builder writes beyond the seven operators."""
    bindings = [{"event": "INSERT", "schema": "public", "table": "books", "filter": f} for f in (
        "author=like.Ops*,year=is.null", "author=ilike.ops a", "author=like.Ops*,year=isdistinct.2000",
        "author=like.Ops*,title=not.in.(One,Two)")]
    subscribed(live, "write", "more-filters", bindings)
    for title, author, year in (("One", "Ops A", 2000), ("Two", "Ops B", None), ("Three", "Ops A", 2001)):
        insert(live, "books", {"title": title, "author": author, "year": year})
    by_binding: dict = {}
    for change in live.node.changes("more-filters", 6):
        by_binding.setdefault(change["binding"], []).append(change["payload"]["new"]["title"])
    assert by_binding == {0: ["Two"], 1: ["One", "Three"], 2: ["Two", "Three"], 3: ["Three"]}
    assert live.node.quiet("more-filters", 0.5) == []
    leave(live, "more-filters")


def test_select_narrows_the_record(live):
    author = "Select"
    subscribed(live, "write", "select", [books(author, select=["id", "title"])])
    row = insert(live, "books", {"title": "Narrow", "author": author, "year": 1999})
    update(live, "books", row["id"], {"year": 2000})
    inserted, updated = live.node.changes("select", 2)
    check_payload(inserted["payload"], "INSERT", {"id": row["id"], "title": "Narrow"}, {})
    check_payload(updated["payload"], "UPDATE", {"id": row["id"], "title": "Narrow"}, {"id": row["id"]})
    leave(live, "select")
    assert "password" in refused(live, "write", "select-secret", [
        {"event": "*", "schema": "public", "table": "user", "select": ["id", "password"]}])


@pytest.mark.parametrize("bad_filter, said", [
    ("nope=eq.1", "no column 'nope'"),
    ("year=eq.nineteen", "year"),
    ("year=like.19*", "text column"),
    ("title=match.^D", "operator"),
    ("year", "column=operator.value"),
    ("year=in.(1,2", "filter"),
])
def test_a_bad_filter_is_a_channel_error(live, bad_filter, said):
    message = refused(live, "write", f"bad-{bad_filter}", [
        {"event": "*", "schema": "public", "table": "books", "filter": bad_filter}])
    assert said in message, message


def test_unknown_table_schema_or_event_is_a_channel_error(live):
    assert "nope" in refused(live, "write", "bad-table", [{"event": "*", "schema": "public", "table": "nope"}])
    assert "schema" in refused(live, "write", "bad-schema", [{"event": "*", "schema": "private", "table": "books"}])
    assert "event" in refused(live, "write", "bad-event", [{"event": "TRUNCATE", "schema": "public", "table": "books"}])


# -- unsubscribe -------------------------------------------------------------------------------

def test_unsubscribe_stops_the_changes_of_that_channel_only(live):
    author = "Leaving"
    subscribed(live, "write", "leaving", [books(author)])
    subscribed(live, "write", "staying", [books(author)])
    insert(live, "books", {"title": "Before", "author": author})
    assert live.node.changes("leaving", 1)[0]["payload"]["new"]["title"] == "Before"
    assert live.node.changes("staying", 1)[0]["payload"]["new"]["title"] == "Before"
    leave(live, "leaving")
    insert(live, "books", {"title": "After", "author": author})
    assert live.node.changes("staying", 1)[0]["payload"]["new"]["title"] == "After"
    assert live.node.quiet("leaving", 1.0) == []
    leave(live, "staying")


# -- access -------------------------------------------------------------------------------------

def test_a_read_key_listens(live):
    author = "Read key"
    subscribed(live, "read", "read-key", [books(author)])
    row = insert(live, "books", {"title": "Seen", "author": author})
    check_payload(live.node.changes("read-key", 1)[0]["payload"], "INSERT", row, {})
    leave(live, "read-key")


def test_a_key_without_the_table_gets_the_join_error(live):
    message = refused(live, "books_only", "other-table", [{"event": "*", "schema": "public", "table": "items"}])
    assert "may not use" in message and "books" in message, message
    subscribed(live, "books_only", "own-table", [books("Own table")])
    leave(live, "own-table")


def test_a_wrong_key_gets_the_join_error(live):
    message = refused(live, "wrong", "wrong-key", [books("Wrong")])
    assert "unknown or revoked" in message, message


def test_every_table_means_those_the_key_may_read(live):
    subscribed(live, "books_only", "every-table", [{"event": "INSERT", "schema": "public"}])
    insert(live, "stores", {"name": "Not for books_only"})
    row = insert(live, "books", {"title": "For books_only", "author": "Every table"})
    # (a change committed just before the join may come too: the feed starts at the last change
    # its worker has seen)
    got = []
    while not got or got[-1]["new"] != row:
        got.append(live.node.changes("every-table", 1)[0]["payload"])
    assert {p["table"] for p in got} == {"books"}, got
    assert live.node.quiet("every-table", 0.5) == []
    leave(live, "every-table")


def test_write_only_columns_never_appear(live):
    subscribed(live, "write", "users", [{"event": "*", "schema": "public", "table": "user"}])
    user = insert(live, "user", {"email": "rt@example.com", "password": "correct horse battery staple",
                                 "name": "RT"})
    update(live, "user", user["id"], {"password": "another secret", "name": "RT 2"})
    inserted, updated = live.node.changes("users", 2)
    for payload in (inserted["payload"], updated["payload"]):
        assert "password" not in payload["new"], payload
        assert "correct horse" not in repr(payload) and "another secret" not in repr(payload)
    assert inserted["payload"]["new"] == {"id": user["id"], "email": "rt@example.com", "name": "RT"}
    assert "password" in refused(live, "write", "password-filter", [
        {"event": "*", "schema": "public", "table": "user", "filter": "password=eq.x"}])
    leave(live, "users")


def test_broadcast_and_presence_are_not_supported(live):
    message = refused(live, "write", "presence", [books("Presence")], config={"presence": {"enabled": True}})
    assert "Presence are not supported" in message, message
    message = refused(live, "write", "broadcast-only", [])
    assert "not supported" in message, message

@pytest.mark.parametrize("client", ["write", "write_v1"])  # vsn 2.0.0 sends a broadcast as a binary frame
def test_a_broadcast_sent_is_answered_not_sent_and_the_channel_goes_on(live, client):
    author, channel = f"Broadcast {client}", f"broadcast-{client}"
    subscribed(live, client, channel, [books(author)])
    live.node.do("send", channel=channel, payload={"type": "broadcast", "event": "hi", "payload": {"a": 1}})
    system = live.node.expect(lambda r: r["kind"] == "system" and r["channel"] == channel
                              and r["payload"]["status"] == "error")
    assert "not sent" in system["payload"]["message"] and system["payload"]["extension"] == "broadcast"
    row = insert(live, "books", {"title": "Still listening", "author": author})
    assert live.node.changes(channel, 1)[0]["payload"]["new"] == row
    leave(live, channel)


def test_a_new_access_token_that_cannot_read_ends_the_channel(live):
    live.node.client("switching", live.keys["write"])
    author = "Switching"
    subscribed(live, "switching", "switching", [books(author)])
    live.node.do("setAuth", client="switching", token=live.keys["wrong"])
    live.node.expect(lambda r: r["kind"] == "done" and r["op"] == "setAuth")
    system = live.node.expect(lambda r: r["kind"] == "system" and r["channel"] == "switching"
                              and r["payload"]["status"] == "error")
    assert "unknown or revoked" in system["payload"]["message"]
    closed = live.node.expect(lambda r: r["kind"] == "status" and r["channel"] == "switching")
    assert closed["status"] == "CLOSED", closed
    insert(live, "books", {"title": "Unseen", "author": author})
    assert live.node.quiet("switching", 1.0) == []


def test_a_revoked_key_ends_its_channels(live):
    author = "Revoked"
    subscribed(live, "doomed", "doomed", [books(author)])
    insert(live, "books", {"title": "Before revocation", "author": author})
    assert live.node.changes("doomed", 1)[0]["payload"]["new"]["title"] == "Before revocation"
    assert keys_cli(live.url, "revoke", "doomed").exit_code == 0
    system = live.node.expect(lambda r: r["kind"] == "system" and r["channel"] == "doomed"
                              and r["payload"]["status"] == "error")
    assert "revoked" in system["payload"]["message"], system
    insert(live, "books", {"title": "After revocation", "author": author})
    assert live.node.quiet("doomed", 1.0) == []


# -- a server restart ----------------------------------------------------------------------------

@pytest.mark.parametrize("database", DATABASES)
def test_supabase_js_rejoins_after_a_restart_and_gets_later_changes(database, tmp_path, prepared_servers):
    url = clean_database(database, tmp_path, prepared_servers)
    key = new_key(url, "app")
    server = LiveServer(url, workers=1, threads=2)
    node = Realtime(node_command("realtime.mjs"), server.url)
    live = SimpleNamespace(base=server.url, node=node, http=requests.Session())
    live.http.headers["Authorization"] = f"Bearer {key}"
    try:
        node.client("app", key)
        subscribed(live, "app", "restart", [books("Restart")])
        insert(live, "books", {"title": "Before", "author": "Restart"})
        assert node.changes("restart", 1)[0]["payload"]["new"]["title"] == "Before"
        server.stop()
        server = LiveServer(url, workers=1, threads=2, port=server.port)
        again = node.expect(lambda r: r["kind"] == "status" and r["channel"] == "restart"
                            and r["status"] == "SUBSCRIBED", timeout=30)
        assert again["error"] is None
        row = insert(live, "books", {"title": "After", "author": "Restart"})
        check_payload(node.changes("restart", 1)[0]["payload"], "INSERT", row, {})
    finally:
        live.http.close()
        node.close()
        server.stop()


def test_a_login_token_listens_as_its_user(live):
    insert(live, "user", {"email": "listener@example.com", "password": "a long enough password"})
    login = requests.post(f"{live.base}/-/login", json={"email": "listener@example.com",
                                                         "password": "a long enough password"})
    assert login.status_code == 200, login.text
    live.node.client("login", login.json()["token"])
    author = "Login token"
    subscribed(live, "login", "login", [books(author)])
    row = insert(live, "books", {"title": "For a user", "author": author})
    check_payload(live.node.changes("login", 1)[0]["payload"], "INSERT", row, {})
    leave(live, "login")


# -- the protocol itself, below supabase-js ---------------------------------------------------

def raw(live, vsn: str = "2.0.0", **headers):
    """A bare WebSocket to the endpoint, as realtime-js opens it."""
    url = live.base.replace("http", "ws", 1) + f"/realtime/v1/websocket?apikey={live.keys['write']}&vsn={vsn}"
    return ws_connect(url, additional_headers=headers or None, open_timeout=10)


def test_heartbeats_unknown_topics_and_a_second_join(live):
    with raw(live) as ws:
        ws.send(json.dumps([None, "1", "phoenix", "heartbeat", {}]))
        assert json.loads(ws.recv(5)) == [None, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}]
        ws.send(json.dumps(["9", "2", "realtime:nowhere", "access_token", {"access_token": "x"}]))
        unmatched = {"status": "error", "response": {"reason": "unmatched topic"}}
        assert json.loads(ws.recv(5))[3:] == ["phx_reply", unmatched]
        join = {"config": {"postgres_changes": [books("Raw")]}}
        ws.send(json.dumps(["1", "3", "realtime:raw", "phx_join", join]))
        reply = json.loads(ws.recv(5))
        assert reply[:4] == ["1", "3", "realtime:raw", "phx_reply"] and reply[4]["status"] == "ok"
        [binding] = reply[4]["response"]["postgres_changes"]
        assert {k: binding[k] for k in ("event", "schema", "table", "filter")} == books("Raw")
        assert json.loads(ws.recv(5))[3] == "system"
        ws.send(json.dumps(["4", "4", "realtime:raw", "phx_join", join]))  # joined again: the old one closes
        assert json.loads(ws.recv(5))[:4] == ["1", None, "realtime:raw", "phx_close"]
        assert json.loads(ws.recv(5))[:4] == ["4", "4", "realtime:raw", "phx_reply"]


def test_version_1_messages_are_objects(live):
    with raw(live, "1.0.0") as ws:
        ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "7"}))
        assert json.loads(ws.recv(5)) == {"topic": "phoenix", "event": "phx_reply", "ref": "7",
                                          "payload": {"status": "ok", "response": {}}}


@pytest.mark.parametrize("vsn, frame, code", [
    ("2.0.0", "not json", 1007),
    ("2.0.0", '{"topic": "phoenix"}', 1007),
    ("2.0.0", json.dumps(["1", "1", "realtime:" + "x" * 300, "phx_join", {}]), 1007),
    ("3.0.0", None, 1008),
])
def test_what_is_not_the_protocol_closes_the_socket_with_a_reason(live, vsn, frame, code):
    with raw(live, vsn) as ws:
        if frame is not None:
            ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(5)
    assert closed.value.rcvd.code == code and closed.value.rcvd.reason, closed.value


def test_a_browser_origin_not_allowed_is_refused(live):
    with pytest.raises(InvalidStatus) as refused_:
        raw(live, Origin="https://elsewhere.example")
    assert refused_.value.response.status_code == 403


def test_one_socket_holds_at_most_100_bindings(live):
    sixty = {"config": {"postgres_changes": [books(f"Cap {n}") for n in range(60)]}}
    with raw(live) as ws:
        ws.send(json.dumps(["1", "1", "realtime:cap-1", "phx_join", sixty]))
        assert json.loads(ws.recv(5))[4]["status"] == "ok"
        ws.recv(5)  # its system message
        ws.send(json.dumps(["2", "2", "realtime:cap-2", "phx_join", sixty]))
        reply = json.loads(ws.recv(5))[4]
    assert reply["status"] == "error" and "at most 100" in reply["response"]["reason"], reply


def test_waiting_for_the_subscription_and_a_private_channel(live):
    """realtime-js 2.119's postgres_changes_options.wait (the join is answered once the channel
    listens, as it always is here) and config.private (postgres_changes keep the key's access)."""
    author = "Waiting"
    subscribed(live, "write", "waiting", [books(author)],
               config={"postgres_changes_options": {"wait": True}, "private": True})
    row = insert(live, "books", {"title": "Right away", "author": author})
    check_payload(live.node.changes("waiting", 1)[0]["payload"], "INSERT", row, {})
    leave(live, "waiting")
