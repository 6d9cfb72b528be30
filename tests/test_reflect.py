"""`--reflect`: an existing database, built here with plain SQL, served without model code."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
import requests
from conftest import DATABASES, drop_state_home, server_url
from envelope import assert_error, ok
from serving import free_port
from sqlalchemy import (
    MetaData,
    Table,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url

from tiddly import create_app, schema
from tiddly.config import Config
from tiddly.storage import StateHome

MY_TABLES = ("order_lines", "order", "customers", "event_log")
AUTO_PK = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "SERIAL PRIMARY KEY",
           "mysql": "INT AUTO_INCREMENT PRIMARY KEY"}


def _ddl(dialect: str) -> list[str]:
    q = "`" if dialect == "mysql" else '"'
    suffix = " ENGINE=InnoDB" if dialect == "mysql" else ""
    return [s.replace("'", q) + suffix for s in (
        f"CREATE TABLE customers (id {AUTO_PK[dialect]}, email VARCHAR(100) NOT NULL UNIQUE, "
        "'full name' VARCHAR(100))",
        f"CREATE TABLE 'order' (id {AUTO_PK[dialect]}, customer_id INTEGER NOT NULL REFERENCES customers (id), "
        "'my col' VARCHAR(50), total NUMERIC(10, 2))",
        "CREATE TABLE order_lines (order_id INTEGER NOT NULL REFERENCES 'order' (id), line INTEGER NOT NULL, "
        "qty INTEGER NOT NULL, PRIMARY KEY (order_id, line))",
        "CREATE TABLE event_log (at VARCHAR(40), message VARCHAR(200))",
    )]


@pytest.fixture(params=DATABASES)
def existing_db(request, tmp_path) -> str:
    """A database holding the tables above (and, on a server, whatever else is there)."""
    url = f"sqlite:///{tmp_path / 'existing.db'}" if request.param == "sqlite" else server_url(request.param)
    if request.param != "sqlite":
        drop_state_home(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for name in MY_TABLES:
            conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)}"))
        for statement in _ddl(conn.dialect.name):
            conn.execute(text(statement))
    engine.dispose()
    return url


@pytest.fixture
def reflected_client(existing_db):
    engine = create_engine(existing_db)
    found = schema.reflected(engine, tables=MY_TABLES)
    engine.dispose()
    app = create_app(Config(database_url=existing_db), found.metadata, found.registry)
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()


def test_reflection_reads_keys_and_constraints(existing_db):
    engine = create_engine(existing_db)
    found = schema.reflected(engine)
    engine.dispose()
    assert set(MY_TABLES) <= set(found.registry.tables) and not found.managed
    lines = found.registry.get("order_lines")
    assert [c.name for c in lines.primary_key] == ["order_id", "line"]
    assert {fk.column.table.name for fk in lines.table.foreign_keys} == {"order"}
    customers = found.registry.get("customers").table
    uniques = [{c.name for c in con.columns} for con in customers.constraints if isinstance(con, UniqueConstraint)]
    unique_indexes = [{c.name for c in ix.columns} for ix in customers.indexes if ix.unique]
    assert {"email"} in uniques + unique_indexes
    assert found.registry.get("event_log").verbs == ["GET", "FETCH", "QUERY"]
    assert found.registry.get("customers").columns["id"].policy.value == "read_only"


def test_full_crud_through_the_gateway(reflected_client):
    client = reflected_client
    ada = ok(client.post("/customers", json={"email": "ada@example.com", "full name": "Ada"}), 201)
    assert ada["data"] == {"id": ada["id"], "email": "ada@example.com", "full name": "Ada"}
    assert_error(client.post("/customers", json={"email": "ada@example.com"}), 409, "unique_violation")
    assert_error(client.post("/customers", json={"full name": "No Email"}), 400, "missing_column")

    first = ok(client.post("/order", json={"customer_id": ada["id"], "my col": "b", "total": "12.50"}), 201)
    second = ok(client.post("/order", json={"customer_id": ada["id"], "my col": "a"}), 201)
    assert_error(client.post("/order", json={"customer_id": 999}), 409, "foreign_key_violation")
    ordered = ok(client.open("/order", method="FETCH", json={"orderby": '"my col" desc'}))["data"]
    assert [r["my col"] for r in ordered] == ["b", "a"]
    by_url = ok(client.get("/order", query_string={"orderby": '"my col"', "where": '{"my col": "b"}'}))["data"]
    assert [r["id"] for r in by_url] == [first["id"]]
    assert ok(client.patch(f"/order/{second['id']}", json={"my col": "c"}))["data"]["my col"] == "c"

    line = ok(client.post("/order_lines", json={"order_id": first["id"], "line": 1, "qty": 2}), 201)
    assert line["id"] == [first["id"], 1]
    path = f"/order_lines/{first['id']},1"
    assert ok(client.get(path))["data"]["qty"] == 2
    assert ok(client.patch(path, json={"qty": 5}))["data"]["qty"] == 5
    assert client.put(f"/order_lines/{first['id']},2", json={"qty": 1}).status_code == 201
    assert client.put(f"/order_lines/{first['id']},2", json={"qty": 3}).status_code == 200
    assert_error(client.get(f"/order_lines/{first['id']}"), 400, "bad_value")
    assert_error(client.delete(f"/order/{first['id']}"), 409, "foreign_key_violation")
    assert ok(client.delete("/order_lines", json={"where": {"order_id": first["id"]}}))["count"] == 2
    assert ok(client.delete(f"/order/{first['id']}"))["id"] == first["id"]
    assert_error(client.get(f"/order/{first['id']}"), 404, "not_found")

    assert ok(client.get("/event_log"))["data"] == []
    assert_error(client.post("/event_log", json={"message": "x"}), 405, "method_not_allowed")


def test_a_bulk_insert_into_a_reflected_table(reflected_client):
    """SQLite's `id INTEGER PRIMARY KEY` without NOT NULL (the usual way to write it) reflects as
    nullable; a bulk POST, which inserts many rows returning their keys in order, failed with a 500."""
    created = ok(reflected_client.post("/customers", json=[{"email": f"{n}@example.com"} for n in range(3)]), 201)
    assert created["count"] == 3 and len(set(created["ids"])) == 3
    rows = ok(reflected_client.get("/customers", query_string={"orderby": "id"}))["data"]
    assert [(r["id"], r["email"]) for r in rows] == [(pk, f"{n}@example.com") for n, pk in enumerate(created["ids"])]


def test_reflection_never_creates_tables(existing_db):
    engine = create_engine(existing_db)
    found = schema.reflected(engine, tables=["event_log"])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE event_log"))
    app = create_app(Config(database_url=existing_db, create_tables=True), found.metadata, found.registry)
    app.extensions["tiddly"].db.dispose()
    with engine.connect() as conn:
        assert "event_log" not in conn.dialect.get_table_names(conn)
    engine.dispose()


def test_serve_reflect_with_tables_and_exclude(tmp_path, live_server_factory):
    url = f"sqlite:///{tmp_path / 'existing.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in _ddl("sqlite"):
            conn.execute(text(statement))
    engine.dispose()
    server = live_server_factory(url, extra_args=("--reflect", "--exclude", "event_log,customers"))
    names = {t["name"] for t in requests.get(server.url + "/-/tables").json()["data"]}
    assert names == {"order", "order_lines"}
    only = live_server_factory(url, extra_args=("--reflect", "--tables", "customers"))
    created = requests.post(only.url + "/customers", json={"email": "x@example.com"})
    assert created.status_code == 201, created.text
    assert requests.get(only.url + "/order").json()["code"] == "unknown_table"
    assert not (tmp_path / "tiddly.db").exists()


def test_tables_shows_what_the_database_declares_and_the_servers_cap_apart(existing_db):
    engine = create_engine(existing_db)
    with engine.begin() as conn:
        dialect = conn.dialect.name
        conn.execute(text("DROP TABLE IF EXISTS notes"))
        conn.execute(text(f"CREATE TABLE notes (id {AUTO_PK[dialect]}, body TEXT, title VARCHAR(40) NOT NULL)"))
    try:
        found = schema.reflected(engine, tables=["notes"])
        app = create_app(Config(database_url=existing_db, max_string_length=5000), found.metadata, found.registry)
        (notes,) = ok(app.test_client().get("/-/tables"))["data"]
        app.extensions["tiddly"].db.dispose()
        columns = {c["name"]: c for c in notes["columns"]}
        assert columns["id"]["nullable"] is False and columns["id"]["required"] is False
        assert columns["body"]["max_string_length"] == 5000 and "max_length" not in columns["body"]
        assert columns["title"]["max_length"] == 40 and "max_string_length" not in columns["title"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE notes"))
        engine.dispose()


# -- --reflect adds nothing to the database: Tiddly's own tables live apart -----------------

OWN_TABLES = {"api_keys", "idempotency_keys", "login_tokens", "tiddly_secrets",
              "tiddly_changes", "tiddly_change_clock", "tiddly_change_tables"}  # the change feed's log


def _database_itself(url: str) -> dict:
    """What the database's own schema holds, as a user would look at it."""
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {"tables": set(inspect(conn).get_table_names())}
        if conn.dialect.name == "sqlite":
            found["journal_mode"] = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    engine.dispose()
    return found


def _state_tables(url: str) -> set[str]:
    """The tables in the home apart where a --reflect gateway keeps its own state."""
    home = StateHome.beside(make_url(url))
    if home.sidecar:
        with closing(sqlite3.connect(home.sidecar)) as conn:
            return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    engine = create_engine(url)
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names(schema=home.schema))
    engine.dispose()
    return names


def test_serve_reflect_adds_nothing_to_the_database(existing_db, live_server_factory, tmp_path):
    before = _database_itself(existing_db)
    server = live_server_factory(existing_db, extra_args=("--reflect", "--tables", ",".join(MY_TABLES)))
    created = requests.post(server.url + "/customers", json={"email": "ada@example.com"},
                            headers={"Idempotency-Key": "first"})
    replayed = requests.post(server.url + "/customers", json={"email": "ada@example.com"},
                             headers={"Idempotency-Key": "first"})
    assert created.status_code == 201 and replayed.headers.get("Idempotent-Replayed") == "true"
    for total in (1, 2):
        assert requests.post(server.url + "/order", json={"customer_id": created.json()["id"], "total": total}).ok
    assert requests.get(server.url + "/order?limit=1").json()["next"]  # a signed cursor: the secret is stored

    # A key made from the command line is the key the server asks for: they share the one place.
    key = subprocess.run([sys.executable, "-m", "tiddly", "keys", "create", "--reflect", "--name", "k",
                          "--scope", "read", "--database-url", existing_db],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert requests.get(server.url + "/customers").status_code == 401
    assert requests.get(server.url + "/customers", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    banner = server.stop()

    assert _database_itself(existing_db) == before  # no table added, SQLite's journal mode as it was
    assert _state_tables(existing_db) == OWN_TABLES
    home = StateHome.beside(make_url(existing_db))
    assert f"its own tables (API keys, login tokens, idempotency keys, its secret) are in {home.place}" in banner
    if home.sidecar:  # beside the file: only Tiddly's own file and its writer lock, no WAL, no .writer-lock
        assert before["journal_mode"] == "delete"
        assert sorted(p.name for p in tmp_path.iterdir()) == \
            ["existing.db", "existing.db-tiddly", "existing.db-tiddly.writer-lock"]


def test_an_idempotency_key_commits_and_rolls_back_with_its_write(reflected_client, existing_db):
    """Apart but on the same connection: the key's claim is in the write's own transaction."""
    client = reflected_client
    first = client.post("/customers", json={"email": "ada@example.com"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201
    failed = client.post("/customers", json={"email": "ada@example.com"}, headers={"Idempotency-Key": "k2"})
    assert_error(failed, 409, "unique_violation")
    engine = create_engine(existing_db)
    keys = Table("idempotency_keys", MetaData(), autoload_with=engine, schema=StateHome.beside(engine.url).schema) \
        if not existing_db.startswith("sqlite") else None
    with engine.connect() as conn:
        if keys is not None:
            stored = set(conn.execute(select(keys.c.key)).scalars())
        else:
            conn.exec_driver_sql("ATTACH DATABASE ? AS tiddly", (StateHome.beside(engine.url).sidecar,))
            stored = {key for (key,) in conn.exec_driver_sql("SELECT key FROM tiddly.idempotency_keys")}
    engine.dispose()
    assert stored == {"k1"}  # k2's claim rolled back with its failed insert
    retry = client.post("/customers", json={"email": "grace@example.com"}, headers={"Idempotency-Key": "k2"})
    assert retry.status_code == 201  # so the key is free for a new request


def test_reflect_on_an_empty_database_says_so(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = subprocess.run([sys.executable, "-m", "tiddly", "serve", "--reflect", "--port", str(free_port()),
                             "--database-url", f"sqlite:///{empty}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has no tables to serve: --reflect serves the tables a database already has" in result.stderr
    assert "leave out --reflect to serve Tiddly's demo tables" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "tiddly", "serve", "--reflect", "--port", str(free_port()),
                              "--database-url", f"sqlite:///{tmp_path / 'typo.db'}"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and f"no SQLite database at {tmp_path / 'typo.db'}" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]  # nothing made: no sidecar, no typo.db


def test_keys_without_reflect_refuse_a_database_of_others_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'theirs.db'}"
    with closing(sqlite3.connect(tmp_path / "theirs.db")) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    before = _database_itself(url)
    result = subprocess.run([sys.executable, "-m", "tiddly", "keys", "create", "--name", "k", "--scope", "read",
                             "--database-url", url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "if you serve it with --reflect, add --reflect here too" in result.stderr
    assert _database_itself(url) == before and before["journal_mode"] == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]


# -- how reflected columns' values become JSON ------------------------------------------------

JSON_TYPE = {"sqlite": "JSON", "postgresql": "JSONB", "mysql": "JSON"}
# PostgreSQL's ranges; the other databases hold the same text in a text column.
INT_RANGE = {"sqlite": "TEXT", "postgresql": "INT4RANGE", "mysql": "VARCHAR(40)"}
TIME_RANGE = {"sqlite": "TEXT", "postgresql": "TSRANGE", "mysql": "VARCHAR(60)"}


@pytest.fixture
def typed_db(existing_db):
    """``stays``: a JSON column, an integer range and a time range, in each database's own types."""
    engine = create_engine(existing_db)
    with engine.begin() as conn:
        dialect = conn.dialect.name
        conn.execute(text("DROP TABLE IF EXISTS stays"))
        conn.execute(text(f"CREATE TABLE stays (id {AUTO_PK[dialect]}, guest VARCHAR(40), notes {JSON_TYPE[dialect]}, "
                          f"nights {INT_RANGE[dialect]}, during {TIME_RANGE[dialect]})"))
        conn.execute(text("INSERT INTO stays (guest, notes, nights, during) VALUES "
                          "('ada', '{\"late\": true, \"bags\": [1, 2]}', '[1,3)', "
                          "'[\"2000-01-01 13:00:00\",\"2000-01-01 15:00:00\")')"))
    yield existing_db
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE stays"))
    engine.dispose()


@pytest.fixture
def typed_client(typed_db):
    engine = create_engine(typed_db)
    found = schema.reflected(engine, tables=["stays"])
    engine.dispose()
    app = create_app(Config(database_url=typed_db), found.metadata, found.registry)
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()


def test_json_columns_are_json_on_every_database(typed_client):
    """MariaDB's JSON reflects as LONGTEXT (its CHECK json_valid says it is JSON); PostgreSQL's jsonb
    and SQLite's JSON reflect as a JSON type: all three read and write JSON values, not strings."""
    client = typed_client
    assert ok(client.get("/stays/1"))["data"]["notes"] == {"late": True, "bags": [1, 2]}
    made = ok(client.post("/stays", json={"guest": "grace", "notes": {"floor": 3, "tags": ["quiet"]}}), 201)
    assert made["data"]["notes"] == {"floor": 3, "tags": ["quiet"]}
    assert ok(client.get(f"/stays/{made['id']}"))["data"]["notes"] == {"floor": 3, "tags": ["quiet"]}
    rows = client.get(f"/rest/v1/stays?select=guest,notes&id=eq.{made['id']}").get_json()
    assert rows == [{"guest": "grace", "notes": {"floor": 3, "tags": ["quiet"]}}]
    (stays,) = ok(client.get("/-/tables"))["data"]
    assert {c["name"]: c["type"] for c in stays["columns"]}["notes"] == "json"


def test_ranges_read_and_write_as_postgresql_writes_them(typed_client, typed_db):
    """A PostgreSQL range is its text, "[1,3)", as PostgREST shows it (and as the other databases
    hold it in text): read, filtered, ordered and written as that text; text that is no range
    is a 400 there."""
    client = typed_client
    first = client.get("/rest/v1/stays?select=nights,during&id=eq.1").get_json()
    assert first == [{"nights": "[1,3)", "during": '["2000-01-01 13:00:00","2000-01-01 15:00:00")'}]
    made = client.post("/rest/v1/stays", json={"guest": "lin", "nights": "[2,5)"},
                       headers={"Prefer": "return=representation"})
    assert made.status_code == 201 and made.get_json()[0]["nights"] == "[2,5)"
    assert client.get("/rest/v1/stays?select=guest&nights=eq.[2,5)").get_json() == [{"guest": "lin"}]
    assert [r["nights"] for r in client.get("/rest/v1/stays?select=nights&order=nights.desc").get_json()] \
        == ["[2,5)", "[1,3)"]
    patched = client.patch("/stays/1", json={"nights": "[1,4)"})
    assert ok(patched)["data"]["nights"] == "[1,4)"
    if typed_db.startswith("postgresql"):
        assert_error(client.post("/stays", json={"nights": "[3,1)"}), 400, "bad_value")
        assert_error(client.post("/stays", json={"nights": "one to three"}), 400, "bad_value")


def test_many_rows_into_an_integer_primary_key(existing_db):
    """SQLite reports an INTEGER PRIMARY KEY nullable; a key never is (a bulk insert needs it so)."""
    engine = create_engine(existing_db)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS hotel"))
        conn.execute(text(f"CREATE TABLE hotel (id {AUTO_PK[conn.dialect.name]}, name VARCHAR(40) NULL)"))
    try:
        found = schema.reflected(engine, tables=["hotel"])
        app = create_app(Config(database_url=existing_db), found.metadata, found.registry)
        client = app.test_client()
        made = client.post("/rest/v1/hotel", json=[{"name": "a"}, {"name": "b"}],
                           headers={"Prefer": "return=representation"})
        assert made.status_code == 201, made.get_data(as_text=True)
        assert made.get_json() == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
        assert ok(client.post("/hotel", json=[{"name": "c"}, {"name": None}]), 201)["ids"] == [3, 4]
        app.extensions["tiddly"].db.dispose()
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE hotel"))
        engine.dispose()
