"""Stored functions through the PostgREST dialect (/rest/v1/rpc/<fn>), with the real postgrest-py
client over real HTTP, on SQLite, PostgreSQL and MariaDB: arguments by POST and GET, choosing among
overloads, rows read like a table's (select, filters, order, page, count, embeds), computed fields
and relationships; and who may call what: a read key only what the database says cannot write, a
table-limited key only functions over its tables, hidden columns never in an answer.

Each test makes its own tables and functions in the test database (dropped afterwards) and serves
them on a werkzeug server in a thread.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import httpx
import pytest
import requests
from postgrest import APIError, CountMethod, SyncPostgrestClient
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    text,
)
from werkzeug.serving import make_server

from tiddly import create_app
from tiddly.config import Config
from tiddly.models import ApiKey
from tiddly.registry import Registry
from tiddly.services import auth

POSTGRESQL = [
    "CREATE FUNCTION rpc_named(pattern text) RETURNS SETOF rpc_people LANGUAGE sql STABLE "
    "AS $$ SELECT * FROM rpc_people WHERE name LIKE pattern $$",
    "CREATE FUNCTION rpc_rename(person integer, new_name text) RETURNS rpc_people LANGUAGE sql "
    "AS $$ UPDATE rpc_people SET name = new_name WHERE id = person RETURNING * $$",
    "CREATE FUNCTION rpc_add(a integer, b integer DEFAULT 1) RETURNS integer LANGUAGE sql IMMUTABLE "
    "AS $$ SELECT a + b $$",
    "CREATE FUNCTION rpc_size(ids integer[]) RETURNS integer LANGUAGE sql IMMUTABLE "
    "AS $$ SELECT cardinality(ids) $$",
    "CREATE FUNCTION rpc_fail(why text) RETURNS integer LANGUAGE plpgsql IMMUTABLE "
    "AS $$ BEGIN RAISE EXCEPTION 'refused: %', why; END $$",
    "CREATE FUNCTION rpc_echo(json) RETURNS json LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$",
    "CREATE FUNCTION rpc_pick(a text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'text' $$",
    "CREATE FUNCTION rpc_pick(a integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'integer' $$",
    "CREATE FUNCTION rpc_pick(b bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'b' $$",
    "CREATE FUNCTION rpc_pairs(upto integer) RETURNS TABLE (n integer, secret text) LANGUAGE sql STABLE "
    "AS $$ SELECT g, 'x' FROM generate_series(1, upto) g $$",
    "CREATE FUNCTION rpc_scribble() RETURNS void LANGUAGE sql AS $$ UPDATE rpc_people SET name = 'scribbled' $$",
    # Declared STABLE, yet it writes through a volatile one: the READ ONLY transaction refuses it.
    "CREATE FUNCTION rpc_sneaky() RETURNS integer LANGUAGE plpgsql STABLE "
    "AS $$ BEGIN PERFORM rpc_scribble(); RETURN 1; END $$",
    "CREATE FUNCTION rpc_pet_count(rpc_people) RETURNS bigint LANGUAGE sql STABLE "
    "AS $$ SELECT count(*) FROM rpc_pets WHERE owner_id = $1.id $$",
    "CREATE FUNCTION rpc_pets_of(rpc_people) RETURNS SETOF rpc_pets LANGUAGE sql STABLE "
    "AS $$ SELECT * FROM rpc_pets WHERE owner_id = $1.id $$",
]
MARIADB = [
    "CREATE FUNCTION rpc_add(a INT, b INT) RETURNS INT DETERMINISTIC NO SQL RETURN a + b",
    "CREATE PROCEDURE rpc_named(pattern VARCHAR(20)) READS SQL DATA "
    "SELECT id, name FROM rpc_people WHERE name LIKE pattern ORDER BY id",
    "CREATE PROCEDURE rpc_rename(person INT, new_name VARCHAR(20)) MODIFIES SQL DATA "
    "BEGIN UPDATE rpc_people SET name = new_name WHERE id = person; "
    "SELECT id, name FROM rpc_people WHERE id = person; END",
    "CREATE PROCEDURE rpc_pairs(upto INT) READS SQL DATA SELECT id AS n, secret FROM rpc_people WHERE id <= upto",
    # Declared as only reading, yet it writes: the READ ONLY transaction refuses it (error 1792).
    "CREATE FUNCTION rpc_sneaky() RETURNS INT READS SQL DATA BEGIN UPDATE rpc_people SET name = 'scribbled'; "
    "RETURN 1; END",
]


def _metadata() -> MetaData:
    metadata = MetaData()
    people = Table("rpc_people", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)),
                   Column("secret", String(20), info={"policy": "hidden"}))
    Table("rpc_pets", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)),
          Column("owner_id", ForeignKey(people.c.id)))
    return metadata


def _drop_routines(conn) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        for (signature,) in conn.execute(text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = current_schema() AND p.proname LIKE 'rpc\\_%'")).all():
            conn.execute(text(f"DROP FUNCTION IF EXISTS {signature} CASCADE"))
    elif dialect == "mysql":
        for kind, name in conn.execute(text(
                "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME LIKE 'rpc\\_%'")).all():
            conn.execute(text(f"DROP {kind} IF EXISTS {name}"))


class Served:
    def __init__(self, db_url: str, metadata: MetaData):
        self.app = create_app(Config(database_url=db_url), metadata, Registry.from_metadata(metadata))
        self.gateway = self.app.extensions["tiddly"]
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}/rest/v1"
        self.keys = 0
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self, key: str | None = None) -> SyncPostgrestClient:
        return SyncPostgrestClient(self.url, headers={"apikey": key} if key else {})

    def key(self, scope: str, tables: list[str] | None = None) -> str:
        with self.gateway.db.session(write=True) as session:
            self.keys += 1
            return auth.create_key(session, f"rpc-{self.keys}", scope, tables)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.gateway.db.session(write=True) as session:
            session.execute(delete(ApiKey))
        self.gateway.db.dispose()


@contextmanager
def _serving(db_url: str):
    metadata = _metadata()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        _drop_routines(conn)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO rpc_people (id, name, secret) VALUES (1, 'Ann', 's1'), (2, 'Anna', 's2'), "
                          "(3, 'Bob', 's3')"))
        conn.execute(text("INSERT INTO rpc_pets (id, name, owner_id) VALUES (1, 'Rex', 1), (2, 'Tom', 1), "
                          "(3, 'Kit', 3)"))
        routines = {"postgresql": POSTGRESQL, "mysql": MARIADB}.get(conn.dialect.name, [])
        for create in routines:
            conn.execute(text(create))
    served = Served(db_url, metadata)
    try:
        yield served
    finally:
        served.stop()
        with engine.begin() as conn:
            _drop_routines(conn)
        metadata.drop_all(engine)
        engine.dispose()


@pytest.fixture
def served(db_url):
    with _serving(db_url) as server:
        yield server


def _dialect(served: Served) -> str:
    return served.gateway.db.dialect_name


def _error(call) -> APIError:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value


def _names(rest: SyncPostgrestClient) -> list[str]:
    return [row["name"] for row in rest.from_("rpc_people").select("name").order("id").execute().data]


# -- calling -----------------------------------------------------------------------------------

def test_sqlite_serves_no_function_and_says_so(served):
    if _dialect(served) != "sqlite":
        pytest.skip("SQLite stores no functions; the other databases serve theirs (tests below)")
    missing = _error(lambda: served.client().rpc("rpc_add", {"a": 1}).execute())
    assert (missing.code, missing.message) == ("PGRST202", "Could not find the function public.rpc_add(a) in the "
                                                           "schema cache")
    assert "SQLite stores no functions" in missing.details
    response = httpx.get(served.url + "/rpc/rpc_add?a=1")
    assert response.status_code == 404 and response.json()["code"] == "PGRST202"


def test_arguments_by_post_and_by_get(served):
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    rest = served.client()
    assert rest.rpc("rpc_add", {"a": 2, "b": 3}).execute().data == 5
    assert rest.rpc("rpc_add", {"a": 2, "b": 3}, get=True).execute().data == 5
    counted = rest.rpc("rpc_add", {"a": 2, "b": 3}, count=CountMethod.exact).execute()
    assert counted.count == 1
    unknown = _error(lambda: rest.rpc("rpc_add", {"a": 2, "zzz": 3}).execute())
    assert unknown.code == "PGRST202" and "with parameters a, zzz" in unknown.details
    assert httpx.post(served.url + "/rpc/rpc_add", json={"a": "two", "b": 1}).status_code == 400
    if _dialect(served) == "postgresql":  # defaults, arrays, a body for a parameter without a name
        assert rest.rpc("rpc_add", {"a": 2}).execute().data == 3
        assert httpx.get(served.url + "/rpc/rpc_size", params={"ids": "{4,5,6}"}).json() == 3
        assert rest.rpc("rpc_size", {"ids": [4, 5]}).execute().data == 2
        echoed = httpx.post(served.url + "/rpc/rpc_echo", json={"any": ["shape"]})
        assert echoed.json() == {"any": ["shape"]}
        failed = httpx.post(served.url + "/rpc/rpc_fail", json={"why": "no"})
        assert failed.status_code == 400
        assert (failed.json()["code"], failed.json()["message"]) == ("P0001", "refused: no")


def test_overloads_are_chosen_by_argument_names(served):
    if _dialect(served) != "postgresql":
        pytest.skip("only PostgreSQL overloads functions")
    rest = served.client()
    assert rest.rpc("rpc_pick", {"b": 1}).execute().data == "b"
    ambiguous = _error(lambda: rest.rpc("rpc_pick", {"a": 1}).execute())
    assert ambiguous.code == "PGRST203"
    assert ambiguous.message == ("Could not choose the best candidate function between: "
                                 "public.rpc_pick(a => integer), public.rpc_pick(a => text)")
    assert ambiguous.hint.startswith("Try renaming the parameters")
    near = _error(lambda: rest.rpc("rpc_pick", {"c": 1}).execute())
    assert near.code == "PGRST202" and near.hint.startswith("Perhaps you meant to call the function public.rpc_pick(")


def test_rows_take_select_filters_order_page_count_and_embeds(served):
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    rest = served.client()
    named = rest.rpc("rpc_named", {"pattern": "A%"}, count=CountMethod.exact).select("id,name") \
        .order("id", desc=True).limit(1).execute()
    assert named.data == [{"id": 2, "name": "Anna"}] and named.count == 2
    filtered = rest.rpc("rpc_named", {"pattern": "%"}, get=True).select("name").neq("name", "Ann").order("id").execute()
    assert filtered.data == [{"name": "Anna"}, {"name": "Bob"}]
    single = rest.rpc("rpc_named", {"pattern": "B%"}).select("name").single().execute()
    assert single.data == {"name": "Bob"}
    if _dialect(served) == "postgresql":  # its rows are rpc_people's: they embed along its foreign keys
        embedded = rest.rpc("rpc_named", {"pattern": "Ann"}).select("name,rpc_pets(name)").execute()
        assert embedded.data == [{"name": "Ann", "rpc_pets": [{"name": "Rex"}, {"name": "Tom"}]}]


def test_max_affected_refuses_and_undoes_a_call_that_answered_more_rows(served):
    if _dialect(served) != "postgresql":
        pytest.skip("a function writing and answering rows: PostgreSQL")
    response = httpx.post(served.url + "/rpc/rpc_rename", json={"person": 1, "new_name": "Zed"},
                          headers={"Prefer": "handling=strict, max-affected=0"})
    assert response.status_code == 400 and response.json()["code"] == "PGRST124"
    assert _names(served.client()) == ["Ann", "Anna", "Bob"]


def test_a_call_that_writes_runs_on_the_write_path_and_its_hooks_see_it(served):
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    seen = []
    served.gateway.executor.on_changes(after_commit=seen.append)
    rest = served.client()
    renamed = rest.rpc("rpc_rename", {"person": 3, "new_name": "Bo"}).execute()
    expected = {"id": 3, "name": "Bo"}
    assert (renamed.data[0] if isinstance(renamed.data, list) else renamed.data) == expected
    assert _names(rest) == ["Ann", "Anna", "Bo"]
    # What a call may have changed: the table its signature names; a MariaDB procedure names none, so
    # it may have changed every table.
    tables = ["rpc_people"] if _dialect(served) == "postgresql" else ["rpc_people", "rpc_pets"]
    assert [(change.table, change.op) for batch in seen for change in batch] == [(t, "call") for t in tables]
    seen.clear()
    assert rest.rpc("rpc_add", {"a": 1, "b": 1}).execute().data == 2
    assert seen == []  # a call that cannot write changes nothing


def test_a_call_that_writes_with_tx_rollback_answers_and_keeps_nothing(served):
    """postgrest-js's own suite: POST /rpc/<fn> with Prefer: tx=rollback answered and committed."""
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    seen = []
    served.gateway.executor.on_changes(after_commit=seen.append)
    answer = requests.post(served.url + "/rpc/rpc_rename", json={"person": 3, "new_name": "Bo"},
                           headers={"Prefer": "tx=rollback"}, timeout=30)
    assert answer.status_code == 200 and "tx=rollback" in answer.headers["Preference-Applied"]
    body = answer.json()
    assert (body[0] if isinstance(body, list) else body) == {"id": 3, "name": "Bo"}
    assert _names(served.client()) == ["Ann", "Anna", "Bob"] and seen == []


# -- who may call what -----------------------------------------------------------------------------

def test_a_read_key_may_call_only_what_the_database_says_cannot_write(served):
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    served.key("write")  # keys exist: requests need one
    with served.client(served.key("read")) as reader:
        assert reader.rpc("rpc_add", {"a": 1, "b": 2}).execute().data == 3
        assert [r["name"] for r in reader.rpc("rpc_named", {"pattern": "A%"}).select("name").execute().data] \
            == ["Ann", "Anna"]
        refused = _error(lambda: reader.rpc("rpc_rename", {"person": 1, "new_name": "Zed"}).execute())
        assert refused.code == "42501" and "needs write" in refused.message
        # Declared as not writing, it writes anyway: the database refuses it, for every key.
        sneaky = httpx.post(served.url + "/rpc/rpc_sneaky", json={}, headers={"apikey": served.key("write")})
        assert sneaky.status_code == 405 and sneaky.json()["code"] == "25006"
    with served.client(served.key("write")) as writer:
        assert _names(writer) == ["Ann", "Anna", "Bob"]


def test_a_table_limited_key_calls_only_functions_over_its_tables(served):
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    with served.client(served.key("read", ["rpc_pets"])) as pets_only:
        refused = _error(lambda: pets_only.rpc("rpc_named", {"pattern": "%"}).execute())
        assert refused.code == "42501" and "rpc_people" not in refused.message
        # A function that names no table may read any: a limited key cannot call it.
        assert _error(lambda: pets_only.rpc("rpc_add", {"a": 1, "b": 1}).execute()).code == "42501"
    if _dialect(served) == "postgresql":
        with served.client(served.key("read", ["rpc_people", "rpc_pets"])) as both:
            assert both.rpc("rpc_named", {"pattern": "Bob"}).select("name").execute().data == [{"name": "Bob"}]
        with served.client(served.key("read", ["rpc_people"])) as people_only:
            hidden = _error(lambda: people_only.rpc("rpc_named", {"pattern": "%"}).select("name,rpc_pets(name)")
                            .execute())
            assert hidden.code == "PGRST200" and "rpc_pets" not in (hidden.hint or "")


def test_hidden_columns_never_come_out_of_a_function(served):
    if _dialect(served) == "sqlite":
        pytest.skip("SQLite stores no functions")
    rest = served.client()
    rows = rest.rpc("rpc_named", {"pattern": "Ann"}).execute().data
    assert rows and all("secret" not in row for row in rows)
    for query in ("select=secret", "secret=eq.s1", "order=secret"):
        response = httpx.post(f"{served.url}/rpc/rpc_named?{query}", json={"pattern": "%"})
        assert response.status_code == 400 and "s1" not in response.text, query
        assert response.json()["code"] == "42703", query  # as a column that does not exist
    # A result column of the function's own named like a hidden column of its tables is held back too.
    pairs = rest.rpc("rpc_pairs", {"upto": 2}).execute().data
    assert [row["n"] for row in pairs] == [1, 2] and all("secret" not in row for row in pairs)


# -- functions of a table's rows --------------------------------------------------------------------

def test_computed_fields_and_relationships(served):
    if _dialect(served) != "postgresql":
        pytest.skip("functions taking a table's row: PostgreSQL")
    rest = served.client()
    people = rest.from_("rpc_people").select("name,rpc_pet_count,pets:rpc_pets_of(name)") \
        .gt("rpc_pet_count", 0).order("rpc_pet_count", desc=True).execute()
    assert people.data == [{"name": "Ann", "rpc_pet_count": 2, "pets": [{"name": "Rex"}, {"name": "Tom"}]},
                           {"name": "Bob", "rpc_pet_count": 1, "pets": [{"name": "Kit"}]}]
    star = rest.from_("rpc_people").select("*").eq("id", 1).execute()
    assert star.data == [{"id": 1, "name": "Ann"}]  # a computed field is not part of *
    called = rest.rpc("rpc_named", {"pattern": "Bob"}).select("name,rpc_pet_count").execute()
    assert called.data == [{"name": "Bob", "rpc_pet_count": 1}]
    # A table with computed fields is written as before.
    rest.from_("rpc_pets").update({"owner_id": 3}).eq("id", 1).execute()
    assert rest.from_("rpc_people").select("rpc_pet_count").eq("id", 3).single().execute().data == {"rpc_pet_count": 2}
