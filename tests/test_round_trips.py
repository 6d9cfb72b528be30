"""Round trips to PostgreSQL and MariaDB, counted on the wire (tests/wire.py).

PostgreSQL: a write scope's BEGIN goes out with its first statement in one pipeline
(storage/pipeline.py), so a write of one statement costs two round trips, the statement and the
COMMIT; a scope that sends nothing sends no BEGIN and leaves its connection out of any
transaction; a first statement that fails answers its own error and leaves the connection clean.
MariaDB is counted as it is, so a change there shows.
"""
from __future__ import annotations

import pytest
from conftest import ready_server
from sqlalchemy import insert, select
from wire import RoundTrips

from tiddly.errors import UniqueViolation
from tiddly.models import Book, Dual
from tiddly.storage import Database

# One write scope of one INSERT. PostgreSQL: BEGIN and the INSERT, then COMMIT. MariaDB: the INSERT
# (its transaction begins by itself), the COMMIT, and the pool's ROLLBACK when the connection returns.
ONE_INSERT = {"postgresql": 2, "mysql": 3}


@pytest.fixture(params=["postgresql", "mysql"])
def counted(request, prepared_servers):
    wire = RoundTrips(ready_server(request.param, prepared_servers))
    db = Database(wire.url)
    with db.session() as session:  # connected: the connection's own set-up is not counted
        session.execute(select(Dual.id)).all()
    yield db, wire
    db.dispose()


def _insert(db: Database, value: str) -> None:
    with db.session(write=True) as session:
        session.execute(insert(Dual.__table__).values(text=value))


def test_a_write_of_one_statement_costs_the_statement_and_the_commit(counted):
    db, wire = counted
    _insert(db, "warm")  # psycopg prepares nothing before a statement's fifth run; the pool is warm
    wire.take()
    for n in range(5):
        _insert(db, f"counted {n}")
    assert wire.take() == 5 * ONE_INSERT[db.dialect_name]
    with db.session() as session:
        assert len(session.execute(select(Dual.id)).all()) == 6


def test_a_write_scope_that_sends_nothing_begins_nothing(counted):
    db, wire = counted
    wire.take()
    with db.session(write=True):
        pass
    if db.dialect_name == "postgresql":
        assert wire.take() == 0
        raw = db.engine.raw_connection()  # the pooled connection the scope had: out of any transaction
        try:
            assert raw.dbapi_connection.info.transaction_status == 0  # IDLE
        finally:
            raw.close()
    _insert(db, "after")  # and the next write begins as it should
    with db.session() as session:
        assert session.execute(select(Dual.text)).scalars().all() == ["after"]


def test_a_first_statement_that_fails_answers_its_own_error_and_leaves_the_connection_clean(counted):
    db, _ = counted
    with db.session(write=True) as session:
        session.execute(insert(Book.__table__).values(title="t", author="a", isbn="taken"))
    with pytest.raises(UniqueViolation):
        with db.session(write=True) as session:
            session.execute(insert(Book.__table__).values(title="u", author="b", isbn="taken"))
    _insert(db, "next")
    with db.session() as session:
        assert session.execute(select(Dual.text)).scalars().all() == ["next"]
        assert session.execute(select(Book.title)).scalars().all() == ["t"]
    assert db.engine.pool.checkedout() == 0
