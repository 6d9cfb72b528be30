"""tiddly.storage.functions: the functions a database can call, read from its own catalog."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tiddly.storage.functions import Function, Parameter, callable_functions

# Created in the test database's default schema, dropped after each test.
POSTGRESQL = {
    "tt_greet": ("CREATE FUNCTION tt_greet(who text, punct text DEFAULT '!') RETURNS text "
                 "LANGUAGE sql IMMUTABLE AS $$ SELECT 'hi ' || who || punct $$", "FUNCTION tt_greet(text, text)"),
    "tt_bump": ("CREATE FUNCTION tt_bump(n integer) RETURNS integer LANGUAGE sql AS $$ SELECT n + 1 $$",
                "FUNCTION tt_bump(integer)"),
    "tt_bump_text": ("CREATE FUNCTION tt_bump(integer, text) RETURNS void LANGUAGE sql AS ''",
                     "FUNCTION tt_bump(integer, text)"),
    "tt_pairs": ("CREATE FUNCTION tt_pairs(upto integer) RETURNS TABLE (n integer, twice bigint) LANGUAGE sql STABLE "
                 "AS $$ SELECT g, g * 2 FROM generate_series(1, upto) g $$", "FUNCTION tt_pairs(integer)"),
    "tt_rows": ("CREATE FUNCTION tt_rows(tt_things) RETURNS SETOF tt_things LANGUAGE sql STABLE "
                "AS $$ SELECT * FROM tt_things WHERE id = $1.id $$", "FUNCTION tt_rows(tt_things)"),
    "tt_sum": ("CREATE FUNCTION tt_sum(VARIADIC nums integer[]) RETURNS integer LANGUAGE sql IMMUTABLE "
               "AS $$ SELECT sum(x)::integer FROM unnest(nums) x $$", "FUNCTION tt_sum(integer[])"),
    # Not called through /rpc: a procedure and an aggregate.
    "tt_proc": ("CREATE PROCEDURE tt_proc() LANGUAGE sql AS ''", "PROCEDURE tt_proc()"),
    "tt_agg": ("CREATE AGGREGATE tt_agg(integer) (SFUNC = int4pl, STYPE = integer)", "AGGREGATE tt_agg(integer)"),
}
MARIADB = {
    "tt_greet": "CREATE FUNCTION tt_greet(who VARCHAR(40)) RETURNS VARCHAR(60) DETERMINISTIC NO SQL "
                "RETURN CONCAT('hi ', who)",
    "tt_count": "CREATE FUNCTION tt_count() RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM tt_things)",
    "tt_touch": "CREATE FUNCTION tt_touch(n INT) RETURNS INT MODIFIES SQL DATA RETURN n",
    "tt_plain": "CREATE FUNCTION tt_plain(n INT) RETURNS INT RETURN n",  # CONTAINS SQL: says nothing
    "tt_list": "CREATE PROCEDURE tt_list(IN above INT, OUT total INT) READS SQL DATA "
               "SELECT COUNT(*) INTO total FROM tt_things WHERE id > above",
}


@pytest.fixture
def functions_db(db_url):
    engine = create_engine(db_url)
    dialect = engine.dialect.name
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS tt_things" + (" CASCADE" if dialect == "postgresql" else "")))
        conn.execute(text("CREATE TABLE tt_things (id INTEGER PRIMARY KEY, name VARCHAR(20))"))
        if dialect == "postgresql":
            for create, _ in POSTGRESQL.values():
                conn.execute(text(create))
        elif dialect == "mysql":
            for name, create in MARIADB.items():
                kind = "PROCEDURE" if "PROCEDURE" in create.split("(")[0] else "FUNCTION"
                conn.execute(text(f"DROP {kind} IF EXISTS {name}"))
                conn.execute(text(create))
    yield engine
    with engine.begin() as conn:
        if dialect == "postgresql":
            for _, drop in POSTGRESQL.values():
                conn.execute(text(f"DROP {drop}"))
        elif dialect == "mysql":
            for name, create in MARIADB.items():
                kind = "PROCEDURE" if "PROCEDURE" in create.split("(")[0] else "FUNCTION"
                conn.execute(text(f"DROP {kind} {name}"))
        conn.execute(text("DROP TABLE tt_things"))
    engine.dispose()


def _ours(listed: list[Function]) -> dict[str, list[Function]]:
    by_name: dict[str, list[Function]] = {}
    for function in listed:
        if function.name.startswith("tt_"):
            by_name.setdefault(function.name, []).append(function)
    return by_name


def test_each_database_lists_the_functions_its_catalog_holds(functions_db):
    with functions_db.connect() as conn:
        listed = callable_functions(conn)
    {"postgresql": _postgresql_lists_arguments_results_and_volatility,
     "mysql": _mariadb_lists_stored_functions_and_procedures,
     "sqlite": _sqlite_stores_no_functions}[functions_db.dialect.name](listed)


def _postgresql_lists_arguments_results_and_volatility(listed: list[Function]):
    found = _ours(listed)
    assert sorted(found) == ["tt_bump", "tt_greet", "tt_pairs", "tt_rows", "tt_sum"]  # no procedure, no aggregate
    (greet,) = found["tt_greet"]
    assert greet.parameters == (Parameter("who", "text"), Parameter("punct", "text", "'!'::text"))
    assert [p.required for p in greet.parameters] == [True, False]
    assert (greet.returns, greet.returns_set, greet.volatility, greet.writes) == ("text", False, "immutable", False)
    assert greet.identity == "tt_greet(text,text)"
    one, two = found["tt_bump"]  # overloads, told apart by identity
    assert (one.identity, one.volatility, one.writes, one.returns) == ("tt_bump(integer)", "volatile", True, "integer")
    assert two.identity == "tt_bump(integer,text)" and two.returns == "void"
    assert [p.name for p in two.parameters] == [None, None]  # unnamed
    (pairs,) = found["tt_pairs"]
    assert pairs.parameters == (Parameter("upto", "integer"),)
    assert (pairs.returns, pairs.returns_set, pairs.volatility) == ("record", True, "stable")
    assert pairs.columns == (("n", "integer"), ("twice", "bigint"))
    (rows,) = found["tt_rows"]
    assert rows.parameters == (Parameter(None, "tt_things", relation="tt_things"),)
    assert (rows.returns_set, rows.returns_relation, rows.columns) == (True, "tt_things", ())
    (total,) = found["tt_sum"]
    assert total.parameters == (Parameter("nums", "integer[]", mode="variadic"),)
    assert not total.parameters[0].required


def _mariadb_lists_stored_functions_and_procedures(listed: list[Function]):
    found = {name: only for name, (only,) in _ours(listed).items()}
    assert sorted(found) == ["tt_count", "tt_greet", "tt_list", "tt_plain", "tt_touch"]
    greet = found["tt_greet"]
    assert greet.parameters == (Parameter("who", "varchar(40)"),)
    assert (greet.kind, greet.returns, greet.returns_set, greet.volatility) == ("function", "varchar(60)", False,
                                                                                "immutable")
    assert found["tt_count"].volatility == "stable" and found["tt_count"].parameters == ()
    # What a routine declares is all MariaDB records: modifying, or saying nothing, may write.
    assert found["tt_touch"].writes and found["tt_plain"].writes
    listing = found["tt_list"]
    assert (listing.kind, listing.returns_set, listing.volatility) == ("procedure", True, "stable")
    assert listing.parameters == (Parameter("above", "int(11)"),) and listing.columns == (("total", "int(11)"),)


def _sqlite_stores_no_functions(listed: list[Function]):
    assert listed == []  # the functions SQLite calls belong to the program that opened it
