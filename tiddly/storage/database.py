"""``Database``: the engines of one database and the per-request session scope.

``Database.session()`` is the request boundary: it yields a Session, commits once when the
block succeeds, rolls back on any exception, always closes, and turns driver errors into
typed ``errors``. A write scope exits only once its work is durably committed, then runs the
callbacks registered with ``committed.after_commit``; on SQLite its commit is its group's
(``groups.py``).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DBAPIError,
)
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateSchema

from tiddly.storage.engines import (
    WRITE_BEGIN,
    CannotOpen,
    StateHome,
    engine_url,
    explain,
    make_engines,
)
from tiddly.storage.committed import run_after_commit
from tiddly.storage.errors import quietly, translate_error
from tiddly.storage.pipeline import begin_with_first_statement, forget_begin, send_begin_with_first_statement
from tiddly.storage.writers import sqlite_writer_queue

SCHEMA_LOCK_WAIT_S = 60  # how long a starting Tiddly waits for another to finish preparing the schema


# The key of the PostgreSQL advisory lock a starting Tiddly holds (advisory locks are per database).
_SCHEMA_LOCK_KEY = int.from_bytes(b"tiddly", "big")


class Database:
    """One engine (and its pool) for the process; a fresh Session per request."""

    def __init__(self, url: str, statement_timeout_ms: int = 30_000, state_apart: bool = False):
        """``state_apart``: Tiddly's own tables live apart from the database's (a StateHome)."""
        self.state_home = StateHome.beside(engine_url(url)) if state_apart else None
        self.engine, self._read_engine = make_engines(url, statement_timeout_ms, self.state_home)
        sqlite = self.engine.dialect.name == "sqlite"
        # SQLite and PostgreSQL: session() begins a write itself, on a connection that rests in
        # autocommit (no listener to dispatch, no isolation level to switch and switch back).
        self._begin = WRITE_BEGIN.get(self.engine.dialect.name)
        self._write_engine = self._read_engine if self._begin else self.engine
        self._writers = sqlite_writer_queue(self.engine, self.state_home) if sqlite else None
        # PostgreSQL through psycopg (3): the BEGIN goes with the first statement (storage/pipeline.py)
        self._lazy_begin = self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg"
        if self._lazy_begin:
            send_begin_with_first_statement(self.engine.dialect)
        self._driver_sql: dict = {}  # statement -> what first_row sends for it

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        grouped = self._writers.session(self._write_engine, self._begin) if write and self._writers else None
        if grouped is not None:  # SQLite: group commit (storage/groups.py)
            with grouped as session:
                yield session
            run_after_commit(session)
            return
        with self._writers.turn() if write and self._writers else nullcontext():
            session = Session(bind=self._write_engine if write else self._read_engine,
                              autoflush=False, expire_on_commit=False)
            owing = None
            try:
                if write and self._begin and self._lazy_begin:
                    owing = session.connection().connection.dbapi_connection
                    begin_with_first_statement(owing, self._begin)
                elif write and self._begin:
                    session.connection().exec_driver_sql(self._begin)
                yield session
                if write:
                    session.commit()
                else:  # nothing to commit, but ending a read can fail too (MariaDB's ROLLBACK
                    session.close()  # on a connection lost after the last statement): a 503
            except DBAPIError as exc:
                quietly(session.rollback)
                raise translate_error(exc) from exc
            except BaseException:
                quietly(session.rollback)
                raise
            finally:
                if owing is not None:
                    forget_begin(owing)
                quietly(session.close)
        if write:
            run_after_commit(session)

    @contextmanager
    def lookup(self) -> Iterator[Connection]:
        """A connection for a single read outside the request's session (a login token's
        check): no Session to build and close, and in autocommit where reads are."""
        try:
            with self._read_engine.connect() as connection:
                yield connection
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def first_row(self, statement, params: dict | None = None) -> tuple | None:
        """The first row of one read (the guard's key check, on every request), sent through the
        driver on a pooled connection: no Session, no Connection, no result object to build.
        For prebuilt statements whose parameters and columns need no conversion (strings,
        numbers, NULL tests): the row is the driver's tuple."""
        sql, names, defaults = self._driver_sql.get(statement) or self._compile_for_driver(statement)
        values = {**defaults, **(params or {})}
        dialect = self._read_engine.dialect
        raw = None
        try:
            raw = self._read_engine.raw_connection()
            cursor = raw.cursor()
            cursor.execute(sql, tuple(values[n] for n in names) if names is not None else values)
            row = cursor.fetchone()
            cursor.close()
            return row
        except dialect.loaded_dbapi.Error as exc:
            lost = raw is not None and dialect.is_disconnect(exc, raw.dbapi_connection, None)
            if lost:
                raw.invalidate()  # the pool drops it rather than hand it to the next request
            raise translate_error(DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error,
                                                      connection_invalidated=lost, dialect=dialect)) from exc
        finally:
            if raw is not None:
                quietly(raw.close)

    def _compile_for_driver(self, statement) -> tuple[str, tuple | None, dict]:
        """(SQL in the driver's parameter style, the parameter names in order for a positional
        style or None, the statement's own parameter values), compiled once per statement."""
        translate = self._read_engine.get_execution_options().get("schema_translate_map")
        compiled = statement.compile(dialect=self._read_engine.dialect, schema_translate_map=translate,
                                     render_schema_translate=bool(translate))
        sql = compiled.string
        names = tuple(compiled.positiontup) if compiled.positional else None
        own = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        self._driver_sql[statement] = found = (sql, names, own)
        return found

    def ping(self) -> None:
        with self.session() as session:
            session.execute(select(1))

    def check_writable(self) -> None:
        """A 503 naming the cause unless a write would succeed, found by trying one and rolling
        it back. SQLite only, where the trouble is this host's own (a read-only file, folder or
        mount; a full disk): a server database answers for itself, request by request."""
        if self.dialect_name != "sqlite":
            return
        with self.session(write=True) as session:
            session.execute(text("CREATE TABLE tiddly_write_probe (x INTEGER)"))  # SQLite's DDL rolls back
            session.rollback()

    def check_open(self, must_exist: bool = False) -> None:
        """Connect once; a failure is ``CannotOpen``, in words a person can act on.
        ``must_exist``: a SQLite file that is not there is not created but refused."""
        path = self.engine.url.database or ""
        if must_exist and self.dialect_name == "sqlite" and path not in ("", ":memory:") \
                and not path.startswith("file:") and not os.path.exists(path):
            raise CannotOpen(f"no SQLite database at {Path(path).resolve()}: check the path in the URL")
        try:
            with self.engine.connect():
                pass
        except DBAPIError as exc:
            raise CannotOpen(explain(exc, self.engine.url)) from None

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Hold the database's own lock while the schema is checked and made, so processes
        starting together on one database, on any host, take turns: PostgreSQL's advisory
        lock, MariaDB's GET_LOCK (per database name), SQLite's writer queue (one host)."""
        if self.dialect_name == "sqlite":
            with self._writers.turn() if self._writers else nullcontext():
                yield
            return
        if self.dialect_name == "postgresql":
            take = text("SELECT pg_advisory_lock(:key) IS NOT NULL"), {"key": _SCHEMA_LOCK_KEY}
            release = text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY}
        else:
            name = f"tiddly-schema-{hashlib.sha256(str(self.engine.url.database).encode()).hexdigest()[:40]}"
            take = text("SELECT GET_LOCK(:name, :wait) = 1"), {"name": name, "wait": SCHEMA_LOCK_WAIT_S}
            release = text("SELECT RELEASE_LOCK(:name)"), {"name": name}
        with self._read_engine.connect() as connection:
            try:
                taken = connection.execute(*take).scalar()
            except DBAPIError:  # PostgreSQL: the statement timeout ended the wait
                taken = False
            if not taken:
                raise CannotOpen("another Tiddly has been preparing this database's schema for too long; "
                                 "try again when it is done")
            try:
                yield
            finally:
                connection.execute(*release)
                connection.commit()

    def create_state(self, metadata, tables) -> None:
        """Create Tiddly's own ``tables`` where they live: beside the database's tables, or in
        their home apart, made first when missing (the schema, the database, the file)."""
        home = self.state_home
        try:
            if home and home.sidecar and not os.path.exists(home.sidecar) and home.sidecar != ":memory:":
                sqlite3.connect(home.sidecar).close()
                self.engine.dispose()  # connections opened before the file existed did not attach it
            elif home and not home.sidecar:
                with self._read_engine.connect() as connection:
                    if home.schema not in inspect(connection).get_schema_names():
                        connection.execute(CreateSchema(home.schema))
                        connection.commit()
        except DBAPIError as exc:
            reason = (str(exc.orig).strip().splitlines() or ["refused"])[0]
            raise CannotOpen(f"cannot create {home.place} for Tiddly's own tables (keys, tokens): {reason}") from None
        self.create_all(metadata, tables)

    def create_all(self, metadata, tables=None) -> None:
        try:
            if self.dialect_name == "sqlite" and not self.state_home:  # Tiddly's own file: its readers
                with self._read_engine.connect() as connection:         # never wait for its writers
                    connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            metadata.create_all(self.engine, tables=tables)
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()
