"""Security (DESIGN section 7, issue 4): API keys, open mode, login, column policies,
limits, statement timeouts and CORS, through HTTP, on every database."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import pytest
import requests
from click.testing import CliRunner
from envelope import assert_error, ok
from keys import bearer, keys_cli, new_key
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
    text,
    update,
)

from tiddly import create_app, schema
from tiddly.cli import main, serve
from tiddly.config import Config
from tiddly.models import ApiKey, Base, Book, Dual, LoginToken, User, internal_tables
from tiddly.passwords import verify_password

PASSWORD = "correct horse battery staple"


@pytest.fixture
def engine(db_url):
    """A separate engine for looking at what the database really holds."""
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def make_app(db_url: str, **settings):
    return create_app(Config(database_url=db_url, **settings))


@pytest.fixture
def app_factory():
    apps = []

    def build(db_url: str, **settings):
        apps.append(make_app(db_url, **settings))
        return apps[-1].test_client()

    yield build
    for app in apps:
        app.extensions["tiddly"].db.dispose()


# -- 1. API keys -------------------------------------------------------------------

def test_keys_cli_prints_the_key_once_and_stores_only_its_hash(db_url, engine):
    secret = new_key(db_url, "ci", "read", "books,dual")
    assert secret.startswith("tdk_") and len(secret) > 40
    with engine.connect() as conn:
        row = conn.execute(select(ApiKey.__table__)).mappings().one()
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps({k: str(v) for k, v in row.items()})
    assert (row["name"], row["scope"], row["tables"], row["revoked_at"]) == ("ci", "read", "books,dual", None)

    listed = keys_cli(db_url, "list")
    assert listed.exit_code == 0 and "ci\tread\tbooks,dual\t" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.output

    assert keys_cli(db_url, "revoke", "ci").exit_code == 0
    assert "revoked" in keys_cli(db_url, "list").stdout
    again = keys_cli(db_url, "revoke", "ci")
    assert again.exit_code == 1 and "no active key is named 'ci'" in again.output


def test_keys_cli_refuses_bad_input(db_url):
    new_key(db_url, "ci")
    duplicate = keys_cli(db_url, "create", "--name", "ci", "--scope", "read")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    unknown = keys_cli(db_url, "create", "--name", "x", "--scope", "read", "--tables", "books,nosuch")
    assert unknown.exit_code == 1 and "no table named 'nosuch'" in unknown.output
    internal = keys_cli(db_url, "create", "--name", "x", "--scope", "read", "--tables", "api_keys")
    assert internal.exit_code == 1
    scope = keys_cli(db_url, "create", "--name", "x", "--scope", "root")
    assert scope.exit_code == 2 and "root" in scope.output
    assert "\nx\t" not in "\n" + keys_cli(db_url, "list").stdout


def test_once_a_key_exists_every_request_needs_one(client, db_url):
    assert ok(client.get("/books"))["data"] == []  # open mode: loopback, no key yet
    secret = new_key(db_url, "app")
    for response in (client.get("/books"), client.open("/books", method="FETCH", json={}),
                     client.post("/books", json={"title": "T", "author": "A"}), client.get("/-/tables"),
                     client.get("/nosuch"), client.get("/books", headers=bearer("tdk_wrong")),
                     client.get("/books", headers={"Authorization": secret}),
                     client.get("/books", headers={"Authorization": f"Basic {secret}"}),
                     client.get("/books", headers=bearer(secret + "x"))):
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert ok(client.get("/books", headers=bearer(secret)))["data"] == []
    assert ok(client.get("/-/health"))  # health checks need no key
    assert client.get("/health").status_code in (200, 404)  # the CPAP route, when patients are served
    assert client.get("/health").status_code != 401


def test_a_read_key_cannot_write(client, db_url, engine):
    writer, reader = bearer(new_key(db_url, "writer")), bearer(new_key(db_url, "reader", "read"))
    ok(client.post("/books", json={"title": "T", "author": "A"}, headers=writer), 201)
    assert len(ok(client.get("/books", headers=reader))["data"]) == 1
    assert ok(client.get("/books/1", headers=reader))["data"]["title"] == "T"
    assert ok(client.open("/books", method="FETCH", json={"where": {"id": 1}}, headers=reader))["data"]
    assert ok(client.open("/books", method="QUERY", json={}, headers=reader))["data"]
    override = client.post("/books", json={}, headers={**reader, "X-HTTP-Method-Override": "FETCH"})
    assert ok(override)["data"]
    for response in (client.post("/books", json={"title": "U", "author": "B"}, headers=reader),
                     client.put("/books/1", json={"title": "U"}, headers=reader),
                     client.patch("/books/1", json={"title": "U"}, headers=reader),
                     client.delete("/books/1", headers=reader),
                     client.delete("/books", json={"where": {"id": 1}}, headers=reader),
                     client.put("/books", json={"id": 1, "title": "U"}, headers=reader)):
        body = assert_error(response, 403, "forbidden")
        assert "read" in body["error"] and "write" in body["error"]
    with engine.connect() as conn:
        assert conn.execute(select(Book.title)).scalars().all() == ["T"]


def test_admin_and_write_keys_write(client, db_url):
    for scope in ("write", "admin"):
        headers = bearer(new_key(db_url, scope, scope))
        ok(client.post("/dual", json={"text": scope}, headers=headers), 201)
        ok(client.patch("/dual/1", json={"text": "again"}, headers=headers))


def test_a_key_limited_to_tables_cannot_touch_others(client, db_url):
    headers = bearer(new_key(db_url, "books-only", "write", "books"))
    ok(client.post("/books", json={"title": "T", "author": "A"}, headers=headers), 201)
    ok(client.get("/books", headers=headers))
    for response in (client.get("/dual", headers=headers), client.post("/dual", json={"text": "x"}, headers=headers),
                     client.open("/user", method="FETCH", json={}, headers=headers),
                     client.get("/nosuch", headers=headers)):  # 403 before 404: nothing about other tables
        body = assert_error(response, 403, "forbidden")
        assert "books" in body["error"]


def test_a_revoked_key_stops_working_at_once(client, db_url):
    secret = new_key(db_url, "leaked")
    new_key(db_url, "other")
    ok(client.get("/books", headers=bearer(secret)))
    assert keys_cli(db_url, "revoke", "leaked").exit_code == 0
    body = assert_error(client.get("/books", headers=bearer(secret)), 401, "unauthorized")
    assert "revoked" in body["error"]


# -- 2. open mode ------------------------------------------------------------------

def test_without_loopback_open_mode_is_off(app_factory, db_url):
    client = app_factory(db_url, open_mode_allowed=False)
    body = assert_error(client.get("/books"), 401, "unauthorized")
    assert "tiddly keys create" in body["error"]
    ok(client.get("/-/health"))
    secret = new_key(db_url, "app")
    ok(client.get("/books", headers=bearer(secret)))
    keys_cli(db_url, "revoke", "app")
    assert_error(client.get("/books"), 401, "unauthorized")  # revoking every key does not open it


def test_serve_refuses_a_public_address_without_keys(db_url):
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--database-url", db_url])
    assert result.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without API keys" in result.output and "--insecure" in result.output


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                            ("192.0.2.1", False), ("no-such-host.invalid", False)])
def test_loopback_detection(host, loopback):
    assert serve._is_loopback(host) is loopback


# -- 3. login ----------------------------------------------------------------------

def add_user(client, email="ada@example.com", password=PASSWORD) -> int:
    return ok(client.post("/user", json={"email": email, "password": password, "name": "Ada"}), 201)["id"]


def test_passwords_are_stored_hashed(client, engine):
    user_id = add_user(client)
    ok(client.put(f"/user/{user_id}", json={"password": "second"}))
    with engine.connect() as conn:
        stored = conn.execute(select(User.password)).scalar_one()
    assert stored.startswith("scrypt$") and "second" not in stored and verify_password("second", stored)


def test_login_issues_a_token_stored_hashed(client, db_url, engine):
    user_id = add_user(client)
    body = ok(client.post("/-/login", json={"email": "ada@example.com", "password": PASSWORD}))
    token = body["token"]
    assert token.startswith("tdl_") and body["token_type"] == "Bearer" and body["scope"] == "write"
    expires = dt.datetime.fromisoformat(body["expires_at"].rstrip("Z"))
    assert dt.timedelta(minutes=59) < expires - dt.datetime.utcnow() <= dt.timedelta(hours=1, seconds=5)
    with engine.connect() as conn:
        row = conn.execute(select(LoginToken.__table__)).mappings().one()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest() and row["user_id"] == user_id

    new_key(db_url, "app")  # keys required from here on: the token is one
    assert_error(client.get("/user"), 401, "unauthorized")
    users = ok(client.open("/user", method="FETCH", json={}, headers=bearer(token)))["data"]
    assert users == [{"id": user_id, "email": "ada@example.com", "name": "Ada"}]
    ok(client.post("/books", json={"title": "T", "author": "A"}, headers=bearer(token)), 201)
    assert_error(client.get("/api_keys", headers=bearer(token)), 404, "unknown_table")


def test_wrong_email_and_wrong_password_answer_alike(client):
    add_user(client)
    client.post("/user", json={"email": "nopass@example.com"})  # a user with no password cannot log in
    answers = [client.post("/-/login", json={"email": email, "password": password})
               for email, password in (("ada@example.com", "wrong"), ("nobody@example.com", PASSWORD),
                                       ("nopass@example.com", ""), ("ADA@example.com", PASSWORD))]
    for response in answers:
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert len({(r.get_data(), tuple(sorted(r.headers.items()))) for r in answers}) == 1


def test_login_rejects_malformed_bodies(client):
    add_user(client)
    for body in ({"email": "ada@example.com"}, {"email": "ada@example.com", "password": PASSWORD, "x": 1},
                 {"email": 1, "password": PASSWORD}, {"email": "ada@example.com", "password": None},
                 ["ada@example.com", PASSWORD], {"email": "a\x00b", "password": PASSWORD}):
        assert_error(client.post("/-/login", json=body), 400, "bad_value")
    assert_error(client.post("/-/login", data="{", content_type="application/json"), 400, "bad_json")
    assert client.get("/-/login").status_code in (404, 405)


def test_expired_or_orphaned_tokens_are_refused(client, db_url, engine):
    user_id = add_user(client)
    login = {"email": "ada@example.com", "password": PASSWORD}
    expiring, orphaned = (ok(client.post("/-/login", json=login))["token"] for _ in range(2))
    new_key(db_url, "app")
    with engine.begin() as conn:
        conn.execute(update(LoginToken).where(LoginToken.token_hash == hashlib.sha256(expiring.encode()).hexdigest())
                     .values(expires_at=dt.datetime.utcnow() - dt.timedelta(seconds=1)))
    body = assert_error(client.get("/books", headers=bearer(expiring)), 401, "unauthorized")
    assert "expired" in body["error"]
    ok(client.get("/books", headers=bearer(orphaned)))
    ok(client.delete(f"/user/{user_id}", headers=bearer(orphaned)))  # the token dies with its user
    assert_error(client.get("/books", headers=bearer(orphaned)), 401, "unauthorized")


# -- 4. column policies --------------------------------------------------------------

def test_fetch_user_never_returns_a_password_or_its_hash(client, engine):
    user_id = add_user(client)
    with engine.connect() as conn:
        stored = conn.execute(select(User.password)).scalar_one()
    secrets_ = (PASSWORD, stored, stored.split("$")[-1], "scrypt")

    def check(response, *, status):
        page = response.get_data(as_text=True)
        assert response.status_code == status, page
        for secret in secrets_:
            assert secret not in page
        data = (response.get_json() or {}).get("data")
        for row in data if isinstance(data, list) else [data] if isinstance(data, dict) else []:
            assert "password" not in row

    fetch = lambda body: client.open("/user", method="FETCH", json=body)  # noqa: E731
    check(fetch({}), status=200)
    check(client.get("/user"), status=200)
    check(client.get(f"/user/{user_id}"), status=200)
    check(fetch({"select": ["id", "email"], "count": True}), status=200)
    for query in ({"select": ["password"]}, {"select": ["id", "password"]}, {"select": "password"},
                  {"select": "id,password"}, {"where": {"password": stored}},
                  {"where": {"password": {"like": "scrypt%"}}, "count": True},
                  {"where": {"password": {"ne": None}}, "count": True},
                  {"where": {"password": {"is": None}}, "count": True},
                  {"where": {"or": [{"id": 0}, {"password": {"gt": "s"}}]}, "count": True},
                  {"where": {"not": {"password": {"like": "a%"}}}},
                  {"where": {"password": {"in": [stored]}}}, {"where": {"password": {"between": ["a", "z"]}}},
                  {"orderby": "password"}, {"orderby": "password desc"}, {"orderby": ["email", "password asc"]}):
        check(fetch(query), status=400)
        assert fetch(query).get_json()["code"] == "unknown_column"
    for args in ({"select": "password"}, {"orderby": "password"}, {"where": json.dumps({"password": stored})},
                 {"where": json.dumps({"password": {"like": "s%"}}), "count": "true"}):
        check(client.get("/user", query_string=args), status=400)
    check(client.delete("/user", json={"where": {"password": {"like": "%"}}}), status=400)
    check(client.patch(f"/user/{user_id}", json={"name": "Ada L."}), status=200)
    check(client.put(f"/user/{user_id}", json={"password": "new one"}), status=200)
    check(client.post("/user", json={"email": "b@example.com", "password": 12345}), status=400)
    check(client.post("/user", json={"email": "ada@example.com", "password": PASSWORD}), status=409)
    check(client.get("/-/tables"), status=200)
    with engine.connect() as conn:
        assert conn.execute(select(User.email)).scalars().all() == ["ada@example.com"]


def test_read_only_columns_are_a_400_naming_the_column(client):
    ok(client.post("/books", json={"title": "T", "author": "A"}), 201)
    for response in (client.post("/books", json={"id": 9, "title": "T", "author": "A"}),
                     client.patch("/books/1", json={"id": 2}),
                     client.post("/books", json=[{"title": "T", "author": "A"}, {"id": 7, "title": "U", "author": "B"}])):
        body = assert_error(response, 400, "read_only_column")
        assert "'id'" in body["error"] and body["details"]["column"] == "id"


def test_internal_tables_are_not_exposed(client, db_url):
    headers = bearer(new_key(db_url, "admin", "admin"))
    names = {t["name"] for t in ok(client.get("/-/tables", headers=headers))["data"]}
    assert {"books", "user"} <= names and not names & {"api_keys", "login_tokens", "idempotency_keys"}
    for table in ("api_keys", "login_tokens", "idempotency_keys"):
        assert_error(client.open(f"/{table}", method="FETCH", json={}, headers=headers), 404, "unknown_table")
        assert_error(client.post(f"/{table}", json={"name": "x"}, headers=headers), 404, "unknown_table")


def test_reflection_exposes_no_gateway_table_and_no_password_hash(client, db_url, engine):
    add_user(client)
    headers = bearer(new_key(db_url, "k", reflect=True))  # a reflected database's keys live apart
    found = schema.reflected(engine)
    assert not set(found.registry.tables) & {t.name for t in internal_tables()}
    with pytest.raises(schema.SchemaError, match="never exposed"):
        schema.reflected(engine, tables=["books", "api_keys"])
    app = create_app(Config(database_url=db_url), found.metadata, found.registry)
    try:
        reflected = app.test_client()
        page = reflected.open("/user", method="FETCH", json={}, headers=headers)
        assert ok(page)["data"][0]["email"] == "ada@example.com" and "scrypt" not in page.get_data(as_text=True)
        assert_error(reflected.open("/user", method="FETCH", json={"select": ["password"]}, headers=headers),
                     400, "unknown_column")
        assert_error(reflected.get("/api_keys", headers=headers), 404, "unknown_table")
    finally:
        app.extensions["tiddly"].db.dispose()


# -- 5. limits -----------------------------------------------------------------------

def test_body_size_limit_is_a_413_with_or_without_content_length(app_factory, db_url, engine):
    client = app_factory(db_url, max_body_bytes=1000)
    assert_error(client.post("/dual", json={"text": "x" * 2000}), 413, "payload_too_large")
    chunked = dict(input_stream=io.BytesIO(json.dumps({"text": "x" * 2000}).encode()),
                   content_type="application/json", environ_overrides={"wsgi.input_terminated": True})
    assert_error(client.post("/dual", **chunked), 413, "payload_too_large")
    small = dict(input_stream=io.BytesIO(b'{"text": "small"}'), content_type="application/json",
                 environ_overrides={"wsgi.input_terminated": True})
    assert ok(client.post("/dual", **small), 201)["data"]["text"] == "small"  # a chunked body is read, not dropped
    with engine.connect() as conn:
        assert conn.execute(select(Dual.text)).scalars().all() == ["small"]


def test_query_and_bulk_limits(app_factory, db_url, engine):
    client = app_factory(db_url, max_bulk_rows=3, max_in_length=3, max_where_depth=2, max_limit=5, default_limit=2)
    body = assert_error(client.post("/dual", json=[{"text": str(i)} for i in range(4)]), 400, "bad_query")
    assert "at most 3 rows" in body["error"]
    ok(client.post("/dual", json=[{"text": str(i)} for i in range(3)]), 201)
    fetch = lambda body: client.open("/dual", method="FETCH", json=body)  # noqa: E731
    assert "at most 3" in assert_error(fetch({"where": {"id": {"in": [1, 2, 3, 4]}}}), 400, "bad_query")["error"]
    assert len(ok(fetch({"where": {"id": {"in": [1, 2, 3]}}, "limit": 5}))["data"]) == 3
    deep = {"or": [{"and": [{"not": {"id": 1}}]}]}
    assert "2 levels" in assert_error(fetch({"where": deep}), 400, "bad_query")["error"]
    assert "at most 5" in assert_error(fetch({"limit": 6}), 400, "bad_query")["error"]
    assert len(ok(fetch({}))["data"]) == 2  # the default page
    assert_error(fetch({"limit": -1}), 400, "bad_query")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Dual)).scalar_one() == 3


def test_string_length_limit(app_factory, db_url):
    client = app_factory(db_url, max_string_length=10)
    body = assert_error(client.post("/dual", json={"text": "x" * 11}), 400, "bad_value")
    assert "'text'" in body["error"] and "at most 10 characters" in body["error"]
    ok(client.post("/dual", json={"text": "é" * 10}), 201)
    assert_error(client.open("/dual", method="FETCH", json={"where": {"text": "x" * 11}}), 400, "bad_value")
    body = assert_error(client.post("/books", json={"title": "t" * 256, "author": "A"}), 400, "bad_value")
    assert "at most 255" in body["error"]  # a declared length wins over the cap
    ok(client.post("/books", json={"title": "t" * 255, "author": "A"}), 201)


def test_json_nesting_limit(client):
    deep = "[" * 600 + "]" * 600
    assert_error(client.post("/dual", data=f'{{"text": {deep}}}', content_type="application/json"), 400, "bad_json")
    assert_error(client.get("/dual", query_string={"where": deep}), 400, "bad_json")
    assert_error(client.open("/dual", method="FETCH", data=f'{{"limit": {deep}}}',
                             content_type="application/json"), 400, "bad_json")


SLOW_VIEWS = {
    "postgresql": "CREATE VIEW tiddly_slow AS SELECT 1 AS id, CAST(pg_sleep(5) AS text) AS nap",
    "mysql": "CREATE VIEW tiddly_slow AS SELECT 1 AS id, CAST(SLEEP(5) AS CHAR) AS nap",
}


@pytest.fixture
def slow_view(engine):
    """A view whose every read sleeps 5 s: a real slow statement the endpoint can run."""
    with engine.begin() as conn:
        conn.execute(text("DROP VIEW IF EXISTS tiddly_slow"))
        conn.execute(text(SLOW_VIEWS[engine.dialect.name]))
    metadata = MetaData()
    Table("tiddly_slow", metadata, Column("id", Integer, primary_key=True), Column("nap", String(10)))
    Base.metadata.tables["dual"].to_metadata(metadata)
    yield metadata
    with engine.begin() as conn:
        conn.execute(text("DROP VIEW tiddly_slow"))


# SQLite has no statement timeout (its busy timeout bounds lock waits): the server databases only.
@pytest.mark.parametrize("db_url", sorted(SLOW_VIEWS), indirect=True)
def test_statement_timeout_is_a_504_and_the_worker_recovers(db_url, slow_view):
    app = create_app(Config(database_url=db_url, statement_timeout_ms=300, create_tables=False), slow_view)
    client = app.test_client()
    try:
        for _ in range(2):  # the pooled connection that timed out is fine afterwards
            body = assert_error(client.open("/tiddly_slow", method="FETCH", json={}), 504, "statement_timeout")
            assert "statement timeout" in body["error"]
            ok(client.post("/dual", json={"text": "still here"}), 201)
            ok(client.get("/-/health"))
        assert len(ok(client.get("/dual"))["data"]) == 2
    finally:
        app.extensions["tiddly"].db.dispose()


# -- 6. CORS -------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def preflight(client, path="/books", method="FETCH", origin=ORIGIN):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": "authorization, content-type"})


def test_no_cors_origin_is_allowed_by_default(client):
    assert_error(preflight(client), 403, "forbidden")
    response = client.get("/books", headers={"Origin": ORIGIN})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


def test_cors_preflight_for_custom_verbs(app_factory, db_url):
    client = app_factory(db_url, cors_origins=f"{ORIGIN}, https://other.example")
    secret = new_key(db_url, "browser")  # a preflight carries no key, and needs none
    for method in ("FETCH", "QUERY", "PUT", "DELETE"):
        response = preflight(client, method=method)
        assert response.status_code == 204, response.get_data(as_text=True)
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        allowed = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
        assert {"FETCH", "QUERY", "GET", "POST", "PUT", "PATCH", "DELETE"} <= allowed
        headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "x-http-method-override"} <= headers
        assert "Origin" in response.headers["Vary"]
    assert preflight(client, path="/books/1", method="PATCH").status_code == 204
    assert_error(preflight(client, origin="https://evil.example"), 403, "forbidden")

    fetched = client.open("/books", method="FETCH", json={}, headers={"Origin": ORIGIN, **bearer(secret)})
    assert fetched.status_code == 200 and fetched.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = client.get("/books", headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]
    other = client.get("/books", headers={"Origin": "https://evil.example", **bearer(secret)})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers


def test_cors_origins_from_the_environment():
    config = Config.from_env({"TIDDLY_CORS_ORIGINS": "https://a.example, https://b.example/"})
    assert config.cors_origin_list == ("https://a.example", "https://b.example")
    assert Config.from_env({}).cors_origin_list == ()


# -- a real server: several workers, chunked bodies, the banner --------------------------

def test_live_keys_hold_on_every_worker_and_chunked_bodies_are_limited(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=2, threads=2, env={"TIDDLY_MAX_BODY_BYTES": "2000"})
    assert requests.get(server.url + "/books").status_code == 200  # open: loopback, no key
    secret = new_key(db_url, "live")
    # Fresh connections, so both workers answer; each checks the database on every request.
    assert {requests.get(server.url + "/books").status_code for _ in range(12)} == {401}
    auth = bearer(secret)
    assert {requests.get(server.url + "/books", headers=auth).status_code for _ in range(12)} == {200}

    def chunks(payload: bytes):
        for start in range(0, len(payload), 500):
            yield payload[start:start + 500]

    headers = {**auth, "Content-Type": "application/json"}
    big = requests.post(server.url + "/dual", data=chunks(json.dumps({"text": "x" * 5000}).encode()),
                        headers=headers)
    assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
    small = requests.post(server.url + "/dual", data=chunks(json.dumps({"text": "y" * 900}).encode()),
                          headers=headers)
    assert small.status_code == 201 and small.json()["data"]["text"] == "y" * 900

    assert keys_cli(db_url, "revoke", "live").exit_code == 0
    assert {requests.get(server.url + "/books", headers=auth).status_code for _ in range(12)} == {401}
    assert "auth: OPEN" in server.stop()


def test_live_insecure_public_bind_says_so(sqlite_url, live_server_factory):
    server = live_server_factory(sqlite_url, extra_args=("--host", "0.0.0.0", "--insecure"))
    assert requests.get(server.url + "/books").status_code == 200
    assert "OPEN and INSECURE (--insecure)" in server.stop()
    new_key(sqlite_url, "k")
    server = live_server_factory(sqlite_url, extra_args=("--host", "0.0.0.0"))
    assert requests.get(server.url + "/books").status_code == 401
    assert "auth: API keys required (1 active)" in server.stop()


# -- docs/security.md runs as written ------------------------------------------------

def test_security_doc_examples_run_as_documented(db_url, live_server_factory, tmp_path):
    from doc_examples import ROOT, check_example, parse_examples

    server = live_server_factory(db_url, workers=1, threads=2)
    created = requests.post(server.url + "/user", json={"email": "ada@example.com", "password": "correct horse"})
    assert created.status_code == 201
    token = requests.post(server.url + "/-/login",
                          json={"email": "ada@example.com", "password": "correct horse"}).json()["token"]
    variables = {"$TIDDLY_KEY": new_key(db_url, "app"), "$READ_KEY": new_key(db_url, "reporting", "read", "books"),
                 "$TOKEN": token}
    text_ = (ROOT / "docs" / "security.md").read_text()
    for name, value in variables.items():
        text_ = text_.replace(name, value)
    examples = parse_examples(text_)
    assert len(examples) >= 9 and all(e.expects_response for e in examples)
    state: dict = {}
    problems = [p for example in examples for p in check_example(example, server.url, tmp_path, state)]
    assert not problems, "docs/security.md differs from the server:\n" + "\n".join(problems)
