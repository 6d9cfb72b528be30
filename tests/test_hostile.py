"""Hostile input (issue 4): random JSON and classic injection strings, thrown at every
shipped table with FETCH, POST, PUT, PATCH and DELETE, on every database.

Each request must answer below 500; a refused one (4xx) must leave every table,
the gateway's own included, exactly as it was; and no answer may carry a
password hash (or the password) of the user seeded at the start.
"""
from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert, select

from tiddly.models import Base, User
from tiddly.passwords import hash_password
from tiddly.registry import Registry
from tiddly.services.query import OPERATORS
from tiddly.web.api.language import QUERY_KEYS

SEED_EMAIL, SEED_PASSWORD = "seed@example.com", "Hostile-pw-7f3a"
TABLES = sorted(Registry.from_metadata(Base.metadata).tables)
COLUMNS = sorted({c.name for t in Base.metadata.sorted_tables for c in t.columns})
INJECTIONS = [
    "' OR 1=1 --", '"; DROP TABLE user; --', "__class__", "metadata", "id; drop table", "1 OR 1=1",
    "user", "password", "key_hash", "api_keys", "*", "%", "_", "\\", "%' --", "'", '"', "`", "\x00", "\u202e",
    "💥", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ǅ", "\ud800", "NaN", "Infinity", "-Infinity", "1e999", "-0", "0x10", " ", "",
    "null", "true", "id desc; --", "../..", "%2e%2e", "a" * 300,
]
NAMES = st.sampled_from(COLUMNS + INJECTIONS + list(OPERATORS) + ["and", "or", "not"]) | st.text(max_size=8)
HUGE = st.sampled_from([2**31, -2**31 - 1, 2**63, -2**63 - 1, 10**30, 2**64, 1e308, -1e308, 5e-324])
SCALARS = (st.none() | st.booleans() | st.integers() | HUGE | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(INJECTIONS) | st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
                    max_leaves=12)
CONDITION = st.dictionaries(st.sampled_from(list(OPERATORS)) | NAMES, JSON, max_size=3)
WHERE = st.recursive(st.dictionaries(NAMES, JSON | CONDITION, max_size=3),
                     lambda inner: st.dictionaries(st.sampled_from(["and", "or", "not"]),
                                                   st.lists(inner, max_size=3) | inner, min_size=1, max_size=2),
                     max_leaves=6)
QUERY = st.fixed_dictionaries({}, optional={
    "where": WHERE | JSON, "orderby": st.sampled_from(COLUMNS + INJECTIONS) | JSON,
    "select": st.lists(st.sampled_from(COLUMNS + INJECTIONS), max_size=4) | JSON,
    "limit": st.integers(-5, 2000) | JSON, "offset": st.integers(-5, 10**20) | JSON,
    "count": st.booleans() | JSON}) | st.dictionaries(st.sampled_from(list(QUERY_KEYS)) | NAMES, JSON, max_size=3)
def _mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` three times in four, ``odd`` otherwise."""
    return st.sampled_from([usual, usual, usual, odd]).flatmap(lambda chosen: chosen)


PLAUSIBLE = st.integers(0, 5) | st.text("abcé💥'", max_size=6) | st.floats(0, 100)
VALUE = _mostly(PLAUSIBLE, SCALARS)
DEEP = st.integers(50, 700).map(lambda n: "[" * n + "1" + "]" * n)
PK = (st.sampled_from(["1", "2", "3", "0", "-1", "1,2", "99999999999999999999", "1.5", "abc"] + INJECTIONS)
      | st.text(max_size=6))


def _path(table: str, pk: str | None = None) -> str:
    path = "/" + quote(table.encode("utf-8", "surrogatepass"), safe="")
    return path if pk is None else path + "/" + quote(pk.encode("utf-8", "surrogatepass"), safe="")


def _typed(column) -> st.SearchStrategy:
    """Values of the column's own type (and a few that only look like it)."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        kind = str
    if kind is int:
        return _mostly(st.integers(-1, 4), HUGE)
    if kind is float:
        return _mostly(st.floats(-1, 1e6), HUGE)
    return st.text("abcé💥'\"%_ ", max_size=8).flatmap(lambda t: _mostly(st.just(t), st.sampled_from(INJECTIONS)))


def _valid_row(table) -> st.SearchStrategy:
    """Rows that name the table's writable columns with values of their types: writes that reach the database."""
    columns = [c for c in table.columns if c is not table.autoincrement_column]
    required = {c.name: _typed(c) for c in columns if not c.nullable}
    return st.fixed_dictionaries(required, optional={c.name: _typed(c) for c in columns if c.nullable})


def _requests(table: str, columns: list[str]):
    """Requests at one table; rows mostly name its real columns, so writes reach the database."""
    valid = _valid_row(Base.metadata.tables[table]) if table in Base.metadata.tables else st.just({})
    row = _mostly(valid, st.dictionaries(st.sampled_from(columns), VALUE, max_size=len(columns))
                  | st.dictionaries(NAMES, JSON, max_size=5))
    rows = _mostly(row, st.lists(row, min_size=1, max_size=4) | JSON).map(json.dumps)
    body = _mostly(rows, DEEP | st.text(max_size=30))
    where = WHERE | st.dictionaries(st.sampled_from(columns), SCALARS | CONDITION, max_size=3)
    query = QUERY | st.fixed_dictionaries({"where": where}, optional={"select": st.lists(st.sampled_from(columns)),
                                                                     "orderby": st.sampled_from(columns)})
    return st.one_of(
        st.tuples(st.just("FETCH"), st.just(_path(table)), query.map(json.dumps) | body),
        st.tuples(st.just("POST"), st.just(_path(table)), body),
        st.tuples(st.just("PUT"), PK.map(lambda pk: _path(table, pk)) | st.just(_path(table)), body),
        st.tuples(st.just("PATCH"), PK.map(lambda pk: _path(table, pk)), body),
        st.tuples(st.just("DELETE"), PK.map(lambda pk: _path(table, pk)), st.none()),
        st.tuples(st.just("DELETE"), st.just(_path(table)), where.map(lambda w: json.dumps({"where": w})) | body),
        st.tuples(st.just("GET"), where.map(lambda w: f"{_path(table)}?where={quote(json.dumps(w))}"), st.none()),
    )


_SHIPPED = {t.name: [c.name for c in t.columns] for t in Base.metadata.sorted_tables if t.name in TABLES}
# Three requests in four go to a shipped table, the rest to an injection string as a table name.
REQUEST = st.sampled_from(sorted(_SHIPPED) * 3 + [None] * len(_SHIPPED)).flatmap(
    lambda t: _requests(t, _SHIPPED[t]) if t else st.sampled_from(INJECTIONS).flatmap(lambda n: _requests(n, COLUMNS)))


def snapshot(engine) -> dict:
    """Every row of every table, in primary-key order."""
    with engine.connect() as conn:
        return {table.name: conn.execute(select(table).order_by(*table.primary_key.columns)).all()
                for table in Base.metadata.sorted_tables}


def test_hostile_requests_never_500_change_nothing_when_refused_and_leak_no_hash(client, db_url):
    engine = create_engine(db_url)
    stored_hash = hash_password(SEED_PASSWORD)
    secrets_ = (SEED_PASSWORD, stored_hash, stored_hash.split("$")[-1], "scrypt$")

    def seed_user():
        with engine.begin() as conn:
            if conn.execute(select(User.id).where(User.email == SEED_EMAIL)).first() is None:
                conn.execute(insert(User).values(email=SEED_EMAIL, password=stored_hash, name="seed"))

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(request=REQUEST)
    def throw(request):
        method, path, body = request
        seed_user()
        before = snapshot(engine)
        response = client.open(path, method=method, data=body, content_type="application/json")
        page = response.get_data(as_text=True)
        assert response.status_code < 500, (method, path, body, page)
        for secret in secrets_:
            assert secret not in page, (method, path, body, page)
        data = (response.get_json(silent=True) or {}).get("data")
        for row in data if isinstance(data, list) else [data]:
            assert not isinstance(row, dict) or "password" not in row
        if response.status_code >= 400:
            assert snapshot(engine) == before, (method, path, body, page)

    try:
        throw()
    finally:
        engine.dispose()
