"""Engines, the per-request session scope, and every dialect difference in one place.

Only this module creates engines. ``Database.session()`` is the request
boundary: it yields a Session, commits once when the block succeeds, rolls back
on any exception, always closes, and turns driver errors into typed ``errors``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from errors import (ApiError, BadValue, Conflict, DatabaseUnavailable, ForeignKeyViolation, StatementTimeout,
                    UniqueViolation)

SQLITE_BUSY_TIMEOUT_S = 30
_WRITE_OPTION = "tiddly_write"


def make_engine(url: str, statement_timeout_ms: int = 30_000) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        options = {"options": f"-c statement_timeout={int(statement_timeout_ms)}"}
        return create_engine(parsed, pool_pre_ping=True, connect_args=options)
    if backend in ("mysql", "mariadb"):
        engine = create_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
        _mysql_session_setup(engine, statement_timeout_ms)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url) -> Engine:
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own
        # implicit BEGIN is deferred and cannot take the write lock up front).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Write transactions take the write lock at BEGIN, so two writers queue
        # on the busy timeout instead of failing with "database is locked".
        immediate = connection.get_execution_options().get(_WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _mysql_session_setup(engine: Engine, statement_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
        if "MariaDB" in dbapi_connection.get_server_info():
            cursor.execute("SET SESSION max_statement_time = %s", (statement_timeout_ms / 1000,))
        else:  # MySQL's own limit covers read-only SELECTs only
            cursor.execute("SET SESSION max_execution_time = %s", (int(statement_timeout_ms),))
        cursor.close()


class Database:
    """One engine (and its pool) for the process; a fresh Session per request."""

    def __init__(self, url: str, statement_timeout_ms: int = 30_000):
        self.engine = make_engine(url, statement_timeout_ms)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        session = Session(bind=self._write_engine if write else self.engine,
                          autoflush=False, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            raise translate_error(exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.session() as session:
            session.execute(select(1))

    def create_all(self, metadata, tables=None) -> None:
        try:
            metadata.create_all(self.engine, tables=tables)
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()


# setval only moves forward; names and values go in as bound parameters.
_ADVANCE_PG_SEQUENCE = text(
    "SELECT setval(s, :value) FROM pg_get_serial_sequence(:table, :column) AS s "
    "WHERE s IS NOT NULL AND :value > COALESCE(pg_sequence_last_value(s::regclass), 0)")


def advance_sequence(session: Session, table, column_name: str, value: int) -> None:
    """After an insert with an explicit key, make later generated keys skip past it.
    Only PostgreSQL needs this: MySQL's AUTO_INCREMENT and SQLite's rowid follow the table."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return
    table_name = bind.dialect.identifier_preparer.format_table(table)
    session.execute(_ADVANCE_PG_SEQUENCE, {"table": table_name, "column": column_name, "value": value})


def translate_error(exc: DBAPIError) -> Exception:
    """Map a driver error to a typed API error; anything unforeseen stays as it is (a 500)."""
    if isinstance(exc, IntegrityError):
        return _integrity_error(exc)
    if isinstance(exc, DataError):
        return BadValue("a value does not fit its column in the database")
    if _is_statement_timeout(exc.orig):
        return StatementTimeout("the query ran longer than the statement timeout and was cancelled; "
                                "narrow it (a where, a smaller limit) or try again")
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return DatabaseUnavailable("the database is unavailable or busy; try again")
    return exc


def _is_statement_timeout(orig) -> bool:
    if getattr(orig, "sqlstate", None) == "57014":  # PostgreSQL query_canceled
        return True
    args = getattr(orig, "args", ())
    # MariaDB max_statement_time exceeded; MySQL max_execution_time exceeded
    return bool(args) and args[0] in (1969, 3024)


def _integrity_error(exc: IntegrityError) -> ApiError:
    kind = _integrity_kind(exc.orig)
    if kind == "unique":
        return UniqueViolation("a row with the same unique value already exists")
    if kind == "foreign_key":
        return ForeignKeyViolation("the change references a missing row, or a row that others still reference")
    if kind == "not_null":
        return Conflict("a required column was left empty", constraint="not_null")
    return Conflict("the change violates a database constraint")


def _integrity_kind(orig) -> str:
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (errno, message); its sqlstate is a generic 23000
        return {1062: "unique", 1451: "foreign_key", 1452: "foreign_key", 1048: "not_null"}.get(args[0], "other")
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate:
        return {"23505": "unique", "23503": "foreign_key", "23502": "not_null"}.get(sqlstate, "other")
    message = str(orig)  # sqlite3
    for prefix, kind in (("UNIQUE", "unique"), ("FOREIGN KEY", "foreign_key"), ("NOT NULL", "not_null")):
        if message.startswith(prefix + " constraint failed"):
            return kind
    return "other"
