"""Hardening (issue 15): what an adversary and a chaos test found, each held here on every
database it applies to."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

import pytest
import requests
from click.testing import CliRunner
from envelope import assert_error, ok
from serving import free_port
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tiddly import create_app
from tiddly.cli import main
from tiddly.config import Config
from tiddly.models import ApiKey
from tiddly.registry import Registry
from tiddly.services import auth
from tiddly.storage import add_sum_parts, integer_sum

# -- 1. input that reached the database and came back a 500 ---------------------------------

OUT_OF_UTC = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("value", OUT_OF_UTC)
@pytest.mark.parametrize("table, column", [("patient_readings", "timestamp"), ("patients", "admitted_at")])
def test_a_date_time_with_no_utc_time_is_a_400_naming_the_column(client, table, column, value):
    for where in ({column: {"gte": value}}, {column: value}, {column: {"in": ["2020-01-01T00:00:00", value]}}):
        body = assert_error(client.open(f"/{table}", method="FETCH", json={"where": where}), 400, "bad_value")
        assert body["details"] == {"column": column}
        assert value in body["error"]
    ok(client.open(f"/{table}", method="FETCH", json={"where": {column: {"gte": "0001-01-01T00:00:00-01:00"}}}))


@pytest.mark.parametrize("offset", [2**63, 2**64, 10**30])
def test_an_offset_past_64_bits_is_the_same_400_on_every_database(client, offset):
    message = "'offset' is at most 9223372036854775807, got "
    body = assert_error(client.open("/books", method="FETCH", json={"offset": offset}), 400, "bad_query")
    assert body["error"].startswith(message)  # past 64 bits the JSON parser reads a float: 1.8e+19
    url = assert_error(client.get(f"/books?offset={offset}"), 400, "bad_query")
    assert url["error"] == message + str(offset)
    assert ok(client.open("/books", method="FETCH", json={"offset": 2**63 - 1, "count": True})) == \
        {"status": "success", "data": [], "count": 0}


NEAR_2_63 = [2**63 - 1, 2**63 - 2, 2**63 - 3]


def test_a_sum_past_64_bits_is_exact_as_a_decimal_string(client):
    for room, mrn in enumerate(NEAR_2_63, 1):
        ok(client.put("/patients", json={"room_number": room, "patient_mrn": mrn, "CPAP_pressure": 9,
                                         "breath_rate": 12.5}), 201)
    body = ok(client.open("/patients", method="FETCH",
                          json={"aggregate": {"total": "sum:patient_mrn", "n": "count", "top": "max:patient_mrn"}}))
    assert body["data"] == [{"total": str(sum(NEAR_2_63)), "n": 3, "top": 2**63 - 1}]
    readings = ok(client.open("/patient_readings", method="FETCH", json={"aggregate": {"s": "sum:patient_mrn"}}))
    assert readings["data"] == [{"s": str(sum(NEAR_2_63))}]
    # A sum within 64 bits stays a number; having and orderby read the sum.
    grouped = ok(client.open("/patients", method="FETCH", json={
        "group": ["room_number"], "aggregate": {"s": "sum:patient_mrn"},
        "having": {"s": {"lt": 2**63 - 1}}, "orderby": "s"}))
    assert grouped["data"] == [{"room_number": 3, "s": 2**63 - 3}, {"room_number": 2, "s": 2**63 - 2}]


def test_sqlite_sums_signed_64_bit_integers_exactly(sqlite_url):
    values = [-(2**63), -(2**63), -1, 0, 2**63 - 1, 2**63 - 2, 2**63 - 3, 12345, None]
    table = Table("big", MetaData(), Column("n", BigInteger))
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(insert(table), [{"n": v} for v in values])
        with pytest.raises(OperationalError, match="integer overflow"):  # what SQLite's own SUM does
            connection.execute(select(func.sum(table.c.n))).scalar()
        total, parts = integer_sum("sqlite", table.c.n)
        assert add_sum_parts(*connection.execute(select(*parts)).one()) == sum(v for v in values if v is not None)
        # The sum to filter on is exact while it fits 64 bits.
        fits = select(total).where(table.c.n.in_([2**63 - 3, -1]))
        assert connection.execute(fits).scalar() == 2**63 - 4
        assert add_sum_parts(*connection.execute(select(*parts).where(table.c.n.is_(None))).one()) is None
    engine.dispose()


# -- 2. a connection lost after a read's last statement ---------------------------------------

KILL = {"postgresql": "SELECT pg_terminate_backend(:id)", "mysql": "KILL :id"}


def _connection_id(dbapi_connection, dialect_name: str) -> int:
    if dialect_name == "postgresql":
        return dbapi_connection.info.backend_pid
    return dbapi_connection.thread_id()


@pytest.fixture
def killer(db_url):
    """kill(engine, marker): after the next statement on ``engine`` that holds ``marker``, the
    database ends that statement's connection (a KILL from another connection, as an admin or a
    restart would); only this test's own connection is ever killed."""
    admin = create_engine(db_url)
    dialect_name = admin.dialect.name

    listening = []

    def kill(engine, marker: str):
        pending = [marker]

        def after(conn, _cursor, statement, *_args):
            if pending and pending[0] in statement:
                pending.clear()
                with admin.connect() as connection:
                    connection.execute(text(KILL[dialect_name]),
                                       {"id": _connection_id(conn.connection.dbapi_connection, dialect_name)})
        event.listen(engine, "after_cursor_execute", after)
        listening.append((engine, after))
    yield kill
    for engine, after in listening:
        event.remove(engine, "after_cursor_execute", after)
    admin.dispose()


@pytest.mark.parametrize("db_url", sorted(KILL), indirect=True)
@pytest.mark.parametrize("method, path", [("GET", "/books/1"), ("FETCH", "/books"), ("GET", "/-/health")])
def test_a_read_whose_connection_dies_after_its_last_statement_is_a_503(app, client, db_url, killer, method, path):
    ok(client.post("/books", json={"title": "Dune", "author": "Herbert"}), 201)
    db = app.extensions["tiddly"].db
    killer(db._read_engine, "books" if path != "/-/health" else "SELECT 1")
    response = client.open(path, method=method)
    if db.dialect_name == "mysql":  # its read ends with a ROLLBACK on the dead connection
        assert_error(response, 503, "database_unavailable")
    else:  # PostgreSQL reads in autocommit: nothing is left to run
        ok(response)
    statuses = [client.open(path, method=method).status_code for _ in range(3)]
    assert 500 not in statuses and statuses[-1] == 200, statuses
    assert db.engine.pool.checkedout() == 0


# -- 3. a login's scrypt holds no transaction ----------------------------------------------------

def test_a_login_hashes_its_password_outside_any_transaction(app, client, monkeypatch):
    """While scrypt runs (~50 ms of CPU) the login holds no connection, and a write from
    another thread goes through: on SQLite it used to wait for the login's write lock."""
    db = app.extensions["tiddly"].db
    checked_out, writes = [], []
    real_verify = auth.verify_password

    def verify_while_watching(password, stored):
        checked_out.append(db.engine.pool.checkedout())
        writer = threading.Thread(target=lambda: writes.append(app.test_client().post("/dual", json={"text": "x"})))
        writer.start()
        writer.join(timeout=10)
        return real_verify(password, stored)

    ok(client.post("/user", json={"email": "ada@example.com", "password": "correct horse"}), 201)
    monkeypatch.setattr(auth, "verify_password", verify_while_watching)
    ok(client.post("/-/login", json={"email": "ada@example.com", "password": "correct horse"}))
    for email, password in (("ada@example.com", "wrong"), ("nobody@example.com", "correct horse")):
        assert_error(client.post("/-/login", json={"email": email, "password": password}), 401, "unauthorized")
    assert checked_out == [0, 0, 0]
    assert [w.status_code for w in writes] == [201, 201, 201]


# -- 4. keyset pages over long texts ------------------------------------------------------------

def test_long_texts_order_and_group_by_their_whole_value(client):
    """MariaDB sorted and grouped TEXT by its first 1,024 bytes while WHERE compares all of it."""
    prefix = "x" * 1100
    ok(client.post("/dual", json=[{"text": prefix + suffix} for suffix in "cab"]), 201)
    assert [row["id"] for row in ok(client.open("/dual", method="FETCH", json={"orderby": "text desc"}))["data"]] \
        == [1, 3, 2]
    grouped = ok(client.open("/dual", method="FETCH", json={"group": ["text"], "aggregate": {"n": "count"}}))
    assert [row["text"][-1] for row in grouped["data"]] == ["a", "b", "c"]


def _walk(client, query) -> list[int]:
    ids, body = [], dict(query)
    while True:
        page = ok(client.open("/dual", method="FETCH", json=body))
        ids += [row["id"] for row in page["data"]]
        if "next" not in page:
            return ids
        body = {**query, "after": page["next"]}


def test_a_cursor_over_a_long_text_is_accepted_back(client):
    long = "x" * 3100 + "é💥" * 1000
    ok(client.post("/dual", json=[{"text": long + str(i)} for i in (2, 0, 1)]), 201)
    assert _walk(client, {"orderby": "text", "limit": 1, "select": ["id"]}) == [2, 3, 1]


def test_a_cursor_too_long_to_send_back_is_never_issued(db_url):
    app = create_app(Config(database_url=db_url, max_body_bytes=10_000))  # cursors of at most 5,000 characters
    client = app.test_client()
    try:
        for value in ("a" * 3000, "b" * 3000, "c" * 6000):
            ok(client.post("/dual", json={"text": value}), 201)
        first = ok(client.open("/dual", method="FETCH", json={"orderby": "text", "limit": 1, "select": ["id"]}))
        second = ok(client.open("/dual", method="FETCH", json={"orderby": "text", "limit": 1, "select": ["id"],
                                                               "after": first["next"]}))
        assert second["data"] == [{"id": 2}]
        body = assert_error(client.open("/dual", method="FETCH", json={"orderby": "text", "limit": 1,
                                                                       "after": second["next"]}), 400, "bad_query")
        assert "too long for a cursor" in body["error"]
        assert_error(client.open("/dual", method="FETCH", json={"after": "x" * 5001 + ".y"}), 400, "bad_cursor")
    finally:
        app.extensions["tiddly"].db.dispose()


# -- 5. a key limited to tables reaches no other, through any door -------------------------------

@pytest.fixture
def new_key(db_url):
    """new_key(name, scope, tables) -> the headers that send a new key; the keys are gone after
    the test (a test with its own database, such as --reflect's, must find open mode)."""
    def create(name: str, scope: str, tables: str) -> dict:
        result = CliRunner().invoke(main, ["keys", "create", "--name", name, "--scope", scope, "--tables", tables,
                                           "--database-url", db_url])
        assert result.exit_code == 0, result.output
        return {"Authorization": f"Bearer {result.stdout.strip()}"}
    yield create
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(delete(ApiKey))
    engine.dispose()


def test_the_patient_routes_need_every_table_they_use(client, new_key):
    ok(client.put("/patients", json={"room_number": 1, "patient_mrn": 7, "CPAP_pressure": 9, "breath_rate": 12.5}),
       201)
    patients_only = new_key("patients-only", "write", "patients")
    both = new_key("both", "write", "patients,patient_readings")
    reading = {"room_number": 1, "patient_mrn": 7, "patient_name": "Ada", "CPAP_pressure": 10,
               "breath_rate": 13.0, "apnea_count": 1, "flow_image": ""}
    for method, path, body in (("GET", "/get_all_patients", None), ("POST", "/add_patient", reading),
                               ("PUT", "/patients", reading)):
        assert_error(client.open(path, method=method, json=body, headers=patients_only), 403, "forbidden")
        assert client.open(path, method=method, json=body, headers=both).status_code == 200
    assert client.get("/CPAP_query/1", headers=patients_only).status_code in (200, 404)  # reads patients only
    ok(client.get("/patients/1", headers=patients_only))


def test_meta_routes_show_a_limited_key_only_its_tables(client, new_key):
    books = new_key("books-only", "read", "books")
    two = new_key("two", "read", "books,dual")
    assert [t["name"] for t in ok(client.get("/-/tables", headers=books))["data"]] == ["books"]
    assert sorted(t["name"] for t in ok(client.get("/-/tables", headers=two))["data"]) == ["books", "dual"]
    document = client.get("/-/openapi.json", headers=books).get_json()
    assert {path.split("/")[1] for path in document["paths"]} == {"-", "books"}
    assert not [name for name in document["components"]["schemas"] if name.split(".")[0] in ("user", "dual")]
    assert "password" not in json.dumps(document)


def test_an_unknown_include_names_only_relations_the_key_may_follow(client, new_key):
    items_only = new_key("items-only", "read", "items")
    body = assert_error(client.open("/items", method="FETCH", json={"include": ["nosuch"]}, headers=items_only),
                        400, "bad_query")
    assert body["error"].endswith("known: none") and "store" not in body["error"]  # both lead to stores
    body = assert_error(client.open("/items", method="FETCH", json={"include": ["store"]}, headers=items_only),
                        400, "bad_query")  # to this key, as unknown as "nosuch"
    assert body["error"].endswith("known: none")
    both = new_key("both", "read", "items,stores")
    body = assert_error(client.open("/items", method="FETCH", json={"include": ["nosuch"]}, headers=both),
                        400, "bad_query")
    assert body["error"].endswith("known: stores, store")


# -- 6. a relationship never reveals a hidden join column ------------------------------------------

class _Hidden(DeclarativeBase):
    pass


class _Owner(_Hidden):
    __tablename__ = "hardening_owners"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    docs: Mapped[list["_Doc"]] = relationship(back_populates="owner", foreign_keys="_Doc.owner_id")


class _Doc(_Hidden):
    __tablename__ = "hardening_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    owner_id: Mapped[int] = mapped_column(ForeignKey("hardening_owners.id"), info={"policy": "hidden"})
    owner: Mapped[_Owner] = relationship(back_populates="docs", foreign_keys=[owner_id])
    shelf_id: Mapped[Optional[int]] = mapped_column(ForeignKey("hardening_owners.id"))
    shelf: Mapped[Optional[_Owner]] = relationship(foreign_keys=[shelf_id])


@pytest.fixture
def hidden_fk_client(db_url):
    engine = create_engine(db_url)
    _Hidden.metadata.drop_all(engine)
    _Hidden.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(_Owner), [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}])
        connection.execute(insert(_Doc), [{"id": 1, "title": "a", "owner_id": 2, "shelf_id": 1},
                                          {"id": 2, "title": "b", "owner_id": 1, "shelf_id": None}])
    registry = Registry.from_metadata(_Hidden.metadata).add_relations(_Hidden.registry.mappers)
    app = create_app(Config(database_url=db_url), _Hidden.metadata, registry)
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()
    _Hidden.metadata.drop_all(engine)
    engine.dispose()


def test_a_relationship_on_a_hidden_column_cannot_be_followed(hidden_fk_client):
    client = hidden_fk_client
    for table, name in (("hardening_docs", "owner"), ("hardening_owners", "docs")):
        body = assert_error(client.open(f"/{table}", method="FETCH", json={"include": {name: {"select": ["id"]}}}),
                            400, "bad_query")
        assert "no relationship" in body["error"]
    assert_error(client.post("/hardening_owners", json={"name": "Lin", "docs": [{"title": "c"}]}),
                 400, "unknown_column")
    # A relationship on readable columns is still followed.
    docs = ok(client.open("/hardening_docs", method="FETCH", json={"include": {"shelf": {"select": ["name"]}}}))
    assert docs["data"] == [{"id": 1, "title": "a", "shelf_id": 1, "shelf": {"name": "Ada"}},
                            {"id": 2, "title": "b", "shelf_id": None, "shelf": None}]


# -- 7. IPv6 loopback is loopback ------------------------------------------------------------------

@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_serve_on_ipv6_loopback_is_open_as_loopback(sqlite_url, live_server_factory, host):
    server = live_server_factory(sqlite_url, workers=1, threads=2, host=host)
    assert requests.post(server.url + "/books", json={"title": "Dune", "author": "Herbert"}).status_code == 201
    banner = server.stop()
    assert f"on http://[::1]:{server.port} " in banner and "auth: OPEN: no API key exists" in banner


# -- 10. a database that cannot store: one line naming the cause ------------------------------------

def _apply_on_connect(db, statement: str) -> None:
    """Run ``statement`` on every new connection of ``db``, from now on (a setting of the test's own
    connections: the shared servers themselves are never changed)."""
    def on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
    event.listen(db.engine, "connect", on_connect)
    db.engine.dispose()


def test_a_full_sqlite_disk_is_a_503_naming_it(sqlite_url):
    app = create_app(Config(database_url=sqlite_url, secret="s"))
    client = app.test_client()
    ok(client.post("/dual", json={"text": "before"}), 201)
    db = app.extensions["tiddly"].db
    with db.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
    _apply_on_connect(db, f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    try:
        body = assert_error(client.post("/dual", json={"text": "x" * 60_000}), 503, "database_unavailable")
        assert body["error"].startswith("the database's disk is full") and body["details"] == {"cause": "disk_full"}
        assert [row["text"] for row in ok(client.get("/dual"))["data"]] == ["before"]
    finally:
        db.dispose()


READ_ONLY_SESSIONS = {"postgresql": "SET default_transaction_read_only = on",
                      "mysql": "SET SESSION TRANSACTION READ ONLY"}


@pytest.mark.parametrize("db_url", sorted(READ_ONLY_SESSIONS), indirect=True)
def test_a_read_only_server_database_is_a_503_naming_it(db_url):
    app = create_app(Config(database_url=db_url, secret="s"))
    client = app.test_client()
    ok(client.post("/dual", json={"text": "before"}), 201)
    db = app.extensions["tiddly"].db
    _apply_on_connect(db, READ_ONLY_SESSIONS[db.dialect_name])
    try:
        for method, path, body in (("POST", "/dual", {"text": "x"}), ("PATCH", "/dual/1", {"text": "y"}),
                                   ("DELETE", "/dual/1", None)):
            error = assert_error(client.open(path, method=method, json=body), 503, "database_unavailable")
            assert error["details"] == {"cause": "read_only"} and "read-only" in error["error"]
        assert [row["text"] for row in ok(client.get("/dual"))["data"]] == ["before"]
    finally:
        db.dispose()


def _read_only(path: Path) -> str:
    """Make the SQLite file ``path`` read-only as a user would find it, and return its URL: a
    read-only file (chmod, or for root, who ignores modes, the immutable attribute), or where
    the file system cannot do that, SQLite's own read-only open."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return f"sqlite:///{path}"
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return f"sqlite:///{path}"
    return f"sqlite:///file:{path}?mode=ro&uri=true"


@pytest.fixture
def read_only_sqlite(tmp_path):
    path = tmp_path / "tiddly.db"
    url = f"sqlite:///{path}"
    result = subprocess.run([sys.executable, "-m", "tiddly", "db", "upgrade", "--database-url", url],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    yield _read_only(path)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_serve_on_a_read_only_database_says_so_in_one_line(read_only_sqlite):
    result = subprocess.run([sys.executable, "-m", "tiddly", "serve", "--port", str(free_port()), "--database-url",
                             read_only_sqlite], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: the database is read-only (a read-only file, mount, server or transaction): it cannot be written"]


def test_a_writer_lock_that_cannot_be_opened_is_a_503_naming_it(tmp_path):
    (tmp_path / "tiddly.db.writer-lock").mkdir()  # as a read-only folder would, open() fails
    app = create_app(Config(database_url=f"sqlite:///{tmp_path / 'tiddly.db'}", secret="s"))
    try:
        body = assert_error(app.test_client().post("/dual", json={"text": "x"}), 503, "database_unavailable")
        assert "writer lock file" in body["error"] and body["details"] == {"cause": "cannot_open"}
        assert_error(app.test_client().get("/dual/1"), 404, "not_found")
    finally:
        app.extensions["tiddly"].db.dispose()
