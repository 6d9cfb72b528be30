"""Writes on SQLite queue in the process; keyed writes bind the key as a parameter.

SQLite takes one writer at a time. Threads of one process wait for it on a lock of
their own (storage/writers.py), so they are woken as soon as the write before them commits
instead of polling in SQLite's busy handler. The table statements by primary key
(crud.py) are built once and take the key as parameters named clear of every column.
"""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from contextlib import contextmanager

import pytest
from envelope import ok
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from tiddly import create_app
from tiddly.config import Config
from tiddly.errors import DatabaseUnavailable
from tiddly.models import Dual
from tiddly.registry import Registry
from tiddly.storage import Database, engines

HOLD_S = 0.4


def _sqlite_db(tmp_path, name: str = "queue.db") -> Database:
    db = Database(f"sqlite:///{tmp_path / name}")
    db.create_all(Dual.metadata, tables=[Dual.__table__])
    return db


@contextmanager
def _writer_holding_its_turn(db: Database):
    """Another thread inside a write scope, a row inserted, until the block calls release()."""
    entered, release = threading.Event(), threading.Event()

    def hold():
        with db.session(write=True) as session:
            session.execute(insert(Dual.__table__).values(text="first"))
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    try:
        yield release.set
    finally:
        release.set()
        holder.join(10)


def _texts(db: Database) -> list[str]:
    with db.session() as session:
        return session.execute(select(Dual.text).order_by(Dual.id)).scalars().all()


def test_a_second_writer_in_the_process_starts_when_the_first_commits(tmp_path):
    db = _sqlite_db(tmp_path)
    with _writer_holding_its_turn(db) as release:
        released_at = []
        threading.Timer(HOLD_S, lambda: (released_at.append(time.monotonic()), release())).start()
        with db.session(write=True) as session:  # its first statement waits for the first writer's turn to end
            session.execute(insert(Dual.__table__).values(text="second"))
            written_at = time.monotonic()
    assert written_at >= released_at[0]
    assert _texts(db) == ["first", "second"]
    db.dispose()


def _hold_in_another_process(url: str, entered, release_at) -> None:
    db = Database(url)
    with db.session(write=True) as session:
        session.execute(insert(Dual.__table__).values(text="child"))
        entered.set()
        time.sleep(HOLD_S)
        release_at.value = time.time()
    db.dispose()


def test_writers_in_two_processes_take_turns_on_the_lock_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    db = _sqlite_db(tmp_path)
    with db.session(write=True) as session:  # the parent's queue and lock file exist before the fork
        session.execute(insert(Dual.__table__).values(text="parent before"))
    context = multiprocessing.get_context("fork")
    entered, release_at = context.Event(), context.Value("d", 0.0)
    child = context.Process(target=_hold_in_another_process, args=(url, entered, release_at))
    child.start()
    assert entered.wait(10)
    with db.session(write=True) as session:  # waits on the file lock, not in SQLite's busy handler
        session.execute(insert(Dual.__table__).values(text="parent after"))
        written_at = time.time()
    child.join(10)
    assert child.exitcode == 0
    assert written_at >= release_at.value > 0
    assert (tmp_path / "queue.db.writer-lock").exists()
    assert _texts(db) == ["parent before", "child", "parent after"]
    db.dispose()


def test_reads_do_not_wait_for_a_writer(tmp_path):
    db = _sqlite_db(tmp_path)
    with _writer_holding_its_turn(db):
        started = time.monotonic()
        assert _texts(db) == []  # WAL: a reader sees the last commit, no wait
        assert time.monotonic() - started < HOLD_S
    db.dispose()


def test_a_writer_that_waits_longer_than_the_busy_timeout_gets_a_503(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    db = _sqlite_db(tmp_path)
    with _writer_holding_its_turn(db):
        with pytest.raises(DatabaseUnavailable):
            with db.session(write=True) as session:
                session.execute(insert(Dual.__table__).values(text="refused"))
    assert _texts(db) == ["first"]  # the holder's write committed; the refused one changed nothing
    db.dispose()


def test_two_database_files_do_not_share_a_queue(tmp_path):
    one, other = _sqlite_db(tmp_path, "one.db"), _sqlite_db(tmp_path, "other.db")
    with _writer_holding_its_turn(one):
        started = time.monotonic()
        with other.session(write=True) as session:
            session.execute(insert(Dual.__table__).values(text="elsewhere"))
        assert time.monotonic() - started < HOLD_S
    one.dispose()
    other.dispose()


def test_nested_write_scopes_in_one_thread_do_not_deadlock_on_the_queue(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    db = _sqlite_db(tmp_path)
    with db.session(write=True) as outer:
        outer.execute(insert(Dual.__table__).values(text="outer"))
        with pytest.raises(Exception):  # passes the queue; SQLite's own lock then refuses it (at BEGIN)
            with db.session(write=True) as inner:
                inner.execute(insert(Dual.__table__).values(text="inner"))
    assert _texts(db) == ["outer"]
    db.dispose()


def _other_writer_is_locked_out(path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        other.close()


def test_a_write_scope_holds_the_write_lock_from_its_first_statement_a_read_scope_none(tmp_path):
    db = _sqlite_db(tmp_path)
    path = tmp_path / "queue.db"
    with db.session(write=True) as session:
        session.execute(select(Dual.id)).all()  # a read first: BEGIN IMMEDIATE took the lock already
        assert _other_writer_is_locked_out(path)
    with db.session() as session:
        session.execute(select(Dual.id)).all()
        assert not _other_writer_is_locked_out(path)
    with db.engine.begin() as connection:  # the engine for DDL and migrations: transactional too
        connection.execute(insert(Dual.__table__).values(text="in a transaction"))
        connection.rollback()
    assert _texts(db) == []
    db.dispose()


# -- a column named like the key's parameters ------------------------------------------

def _clashing_app(db_url: str):
    metadata = MetaData()
    Table("clash", metadata,
          Column("id", Integer, primary_key=True),
          Column("pk_0", String(20)),
          Column("_pk_0", String(20)),
          Column("note", String(20)))
    config = Config(database_url=db_url, create_tables=True)
    return create_app(config, metadata, Registry.from_metadata(metadata))


def test_columns_named_like_key_parameters_are_written_not_confused_with_the_key(db_url):
    app = _clashing_app(db_url)
    client = app.test_client()
    try:
        created = ok(client.post("/clash", json={"pk_0": "a", "_pk_0": "b", "note": "n"}), 201)
        row_id = created["id"]
        other = ok(client.post("/clash", json={"pk_0": "other", "_pk_0": "other", "note": "other"}), 201)["id"]
        patched = ok(client.patch(f"/clash/{row_id}", json={"pk_0": "A", "_pk_0": "B"}))
        assert patched["data"] == {"id": row_id, "pk_0": "A", "_pk_0": "B", "note": "n"}
        ok(client.put(f"/clash/{row_id}", json={"pk_0": "AA", "note": "put"}))
        assert ok(client.get(f"/clash/{row_id}"))["data"] == {"id": row_id, "pk_0": "AA", "_pk_0": "B", "note": "put"}
        assert ok(client.get(f"/clash/{other}"))["data"]["pk_0"] == "other"  # only the addressed row changed
        ok(client.delete(f"/clash/{row_id}"))
        assert [r["id"] for r in ok(client.get("/clash"))["data"]] == [other]
    finally:
        with app.extensions["tiddly"].db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE clash")
        app.extensions["tiddly"].db.dispose()
