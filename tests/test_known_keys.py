"""PostgreSQL: a request by a key the worker knows costs one round trip fewer, counted on the
wire (issue 26 item 4): a read one, a write three (BEGIN, the check and the statement; the change
log's one statement; COMMIT), where they cost two and four (the feed's poller may add a read now
and then, hence the bounds). Its key check travels with the request's first statement; nothing is
answered or committed until the check is back and agrees, so a key revoked a moment ago still
fails at its next request."""
from __future__ import annotations

import pytest
from conftest import ready_server
from envelope import assert_error, ok
from keys import bearer, new_key
from sqlalchemy import create_engine, text
from wire import RoundTrips

from tiddly import create_app
from tiddly.config import Config


READ, WRITE = (1, 1.1, 1.2), (3, 3.1, 3.2)  # per request, with a poll of the change feed now and then


@pytest.fixture
def db_url(prepared_servers):
    return ready_server("postgresql", prepared_servers)


@pytest.fixture
def counted(db_url):
    """(a test client whose database connections go through a proxy counting round trips, the proxy)."""
    wire = RoundTrips(db_url)
    app = create_app(Config(database_url=wire.url))
    yield app.test_client(), wire
    app.extensions["tiddly"].db.dispose()


def _each(counter, requests) -> float:
    counter.take()
    for request in requests:
        request()
    return counter.take() / len(requests)


def test_a_known_keys_read_is_one_round_trip_and_a_write_three(db_url, counted):
    client, counter = counted
    writer = bearer(new_key(db_url, "writer", "write"))
    ok(client.post("/dual", json={"text": "first"}, headers=writer), 201)  # the key's first request: checked alone
    ok(client.get("/dual/1", headers=writer))
    client.get("/rest/v1/dual?id=eq.1", headers=writer)  # the dialect's first request reads the function catalog
    assert _each(counter, [lambda: ok(client.get("/dual/1", headers=writer))] * 10) in READ
    assert _each(counter, [lambda: client.get("/rest/v1/dual?id=eq.1", headers=writer)] * 10) in READ
    assert _each(counter, [lambda n=n: ok(client.post("/dual", json={"text": f"t{n}"}, headers=writer), 201)
                           for n in range(10)]) in WRITE  # BEGIN, check and INSERT; the log; COMMIT
    assert _each(counter, [lambda: ok(client.patch("/dual/1", json={"text": "x"}, headers=writer))] * 10) in WRITE


def test_a_key_revoked_meanwhile_fails_at_its_next_request_and_nothing_is_written(db_url, counted):
    client, _ = counted
    secret = new_key(db_url, "soon-revoked", "write")
    ok(client.post("/dual", json={"text": "kept"}, headers=bearer(secret)), 201)
    ok(client.get("/dual/1", headers=bearer(secret)))  # known to the worker now
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE api_keys SET revoked_at = now() WHERE name = 'soon-revoked'"))
    read = client.get("/dual/1", headers=bearer(secret))
    assert_error(read, 401, "unauthorized")
    assert b"kept" not in read.data
    assert_error(client.post("/dual", json={"text": "never"}, headers=bearer(secret)), 401, "unauthorized")
    assert client.get("/rest/v1/dual", headers=bearer(secret)).status_code == 401
    assert_error(client.get("/-/whoami", headers=bearer(secret)), 401, "unauthorized")  # no statement at all
    with engine.connect() as connection:
        assert connection.execute(text("SELECT text FROM dual ORDER BY id")).scalars().all() == ["kept"]
    engine.dispose()


def test_a_key_whose_scope_changed_meanwhile_writes_nothing(db_url, counted):
    client, _ = counted
    secret = new_key(db_url, "narrowed", "write")
    ok(client.post("/dual", json={"text": "kept"}, headers=bearer(secret)), 201)
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE api_keys SET scope = 'read' WHERE name = 'narrowed'"))
    changed = client.post("/dual", json={"text": "never"}, headers=bearer(secret))
    assert_error(changed, 503, "key_changed")
    assert changed.headers["Retry-After"] == "0"
    assert_error(client.post("/dual", json={"text": "never"}, headers=bearer(secret)), 403, "forbidden")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT text FROM dual ORDER BY id")).scalars().all() == ["kept"]
    engine.dispose()


def test_open_mode_owes_its_check_too_and_ends_at_the_first_key(db_url, counted):
    client, counter = counted
    ok(client.post("/dual", json={"text": "open"}), 201)  # loopback, no key yet: open mode
    ok(client.get("/dual/1"))
    assert _each(counter, [lambda: ok(client.get("/dual/1"))] * 10) in READ
    assert _each(counter, [lambda n=n: ok(client.post("/dual", json={"text": f"o{n}"}), 201) for n in range(5)]) in WRITE
    new_key(db_url, "first", "write")
    refused = client.get("/dual/1")
    assert_error(refused, 401, "unauthorized")
    assert b"open" not in refused.data
    assert_error(client.post("/dual", json={"text": "never"}), 401, "unauthorized")
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM dual WHERE text = 'never'")).scalar() == 0
    engine.dispose()
