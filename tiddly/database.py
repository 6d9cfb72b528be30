"""Engines, the per-request session scope, and every dialect difference in one place.

Only this module creates engines. ``Database.session()`` is the request
boundary: it yields a Session, commits once when the block succeeds, rolls back
on any exception, always closes, and turns driver errors into typed ``errors``.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import case, create_engine, event, func, select, text
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
)
from sqlalchemy.orm import Session

from tiddly.errors import (
    ApiError,
    BadValue,
    Conflict,
    DatabaseUnavailable,
    ForeignKeyViolation,
    StatementTimeout,
    UniqueViolation,
)

SQLITE_BUSY_TIMEOUT_S = 30
POOL_IDLE_PING_S = 5  # a pooled connection idle longer than this is pinged before use
_WRITE_OPTION = "tiddly_write"


def make_engine(url: str, statement_timeout_ms: int = 30_000) -> Engine:
    """The engine for transactions (and DDL, migrations, exports) on ``url``."""
    return _engines(url, statement_timeout_ms)[0]


def _engines(url: str, statement_timeout_ms: int) -> tuple[Engine, Engine]:
    """The engine for transactions, and the engine of read-only scopes: each statement on
    its own, outside a transaction, where the database reads the same that way.

    PostgreSQL's READ COMMITTED gives every statement its own snapshot, in a transaction
    or not, so autocommit reads the same data and saves the BEGIN and COMMIT round trips;
    SQLite then reads as PostgreSQL does. MySQL keeps the transaction: its REPEATABLE READ
    snapshot spans the statements, and switching autocommit would itself cost a round trip."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engines(parsed)
    if backend == "postgresql":
        # Connections rest in autocommit and a transaction switches its connection out of it
        # and back: switching cost about 250,000 instructions per checkout, and reads, the
        # most frequent requests, check out twice (the key check, then the query).
        options = {"options": f"-c statement_timeout={int(statement_timeout_ms)}"}
        engine = _ping_when_idle(create_engine(parsed, connect_args=options, isolation_level="AUTOCOMMIT"))
        return engine.execution_options(isolation_level="READ COMMITTED"), engine
    if backend in ("mysql", "mariadb"):
        engine = _ping_when_idle(create_engine(parsed, pool_recycle=3600))
        _mysql_session_setup(engine, statement_timeout_ms)
        return engine, engine
    engine = _ping_when_idle(create_engine(parsed))
    return engine, engine


def _ping_when_idle(engine: Engine) -> Engine:
    """Ping a pooled connection before use only when it sat idle for a while.

    pool_pre_ping would cost a round trip on every checkout, one per request or more.
    An idle connection is the one a database restart or an idle timeout closes; one
    that breaks while busy fails its request (a 503) and the pool drops it."""
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) < POOL_IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure means "get another connection"
            raise DisconnectionError("a pooled connection failed its ping") from exc

    return engine


def _sqlite_engines(url) -> tuple[Engine, Engine]:
    """Connections in the driver's autocommit mode; transactions begin with our own BEGIN.

    The "begin" listener sits on an engine derived from the pooled one, not on the pooled
    one: a connection-level listener puts every statement of its engine through event
    dispatch, which cost reads (that need no BEGIN) about 200,000 instructions each."""
    pooled = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(pooled, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let the "begin" listener emit BEGIN itself (pysqlite's own implicit
        # BEGIN is deferred and cannot take the write lock up front).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    transactional = pooled.execution_options()

    @event.listens_for(transactional, "begin")
    def _on_begin(connection):
        # Write transactions take the write lock at BEGIN, so two writers queue
        # on the busy timeout instead of failing with "database is locked".
        write = connection.get_execution_options().get(_WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return transactional, pooled


class _SqliteWriterQueue:
    """SQLite has one writer at a time; its writers wait their turn here, not in SQLite.

    SQLite's busy handler polls for the write lock with sleeps of up to 100 ms, so under
    load a writer sleeps long after the lock came free while another takes it again and
    again. Here the threads of a process queue on a lock and are woken the moment the
    writer before them is done, and processes take turns on an exclusive lock on a file
    beside the database (``<database>.writer-lock``), polled every 5 ms at most. A write
    scope opened inside another one in the same thread passes (and then waits on SQLite's
    own lock, as before)."""

    def __init__(self, path: str):
        self._threads = threading.RLock()
        self._path = path + ".writer-lock"
        self._fd: int | None = None
        self._depth = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        if not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise _busy()
        try:
            if self._depth == 0:
                self._lock_file(deadline)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self, deadline: float) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # a read-only folder or mount, most likely
                raise DatabaseUnavailable(f"the database cannot be written: the writer lock file beside it "
                                          f"cannot be opened ({exc.strerror})", cause="cannot_open") from None
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy() from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)


def _quietly(end) -> None:
    """Roll back or close after a failure: a lost connection has no transaction left to end
    (the pool drops it), and the request's own error is the one to answer."""
    try:
        end()
    except DBAPIError:
        pass


def _busy() -> DatabaseUnavailable:
    return DatabaseUnavailable("the database is busy with other writes; try again")


# One queue per database file and process. A forked child (a gunicorn worker) starts with
# none: the parent's open lock file would be shared with it, and shared is not exclusive.
_SQLITE_WRITERS: dict[str, _SqliteWriterQueue] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()
os.register_at_fork(after_in_child=_SQLITE_WRITERS.clear)


def _sqlite_writer_queue(engine: Engine) -> _SqliteWriterQueue | None:
    path = engine.url.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None  # an in-memory database has one connection's worth of writers anyway
    key = str(Path(path).resolve())
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(key, _SqliteWriterQueue(key))


def _mysql_session_setup(engine: Engine, statement_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
        # ORDER BY, GROUP BY and DISTINCT read only the first 1,024 bytes of a TEXT by default,
        # where WHERE compares all of it: keyset pages over long texts skipped rows. 8 MB is the most.
        cursor.execute("SET SESSION max_sort_length = 8388608")
        if "MariaDB" in dbapi_connection.get_server_info():
            cursor.execute("SET SESSION max_statement_time = %s", (statement_timeout_ms / 1000,))
        else:  # MySQL's own limit covers read-only SELECTs only
            cursor.execute("SET SESSION max_execution_time = %s", (int(statement_timeout_ms),))
        cursor.close()


class Database:
    """One engine (and its pool) for the process; a fresh Session per request."""

    def __init__(self, url: str, statement_timeout_ms: int = 30_000):
        self.engine, self._read_engine = _engines(url, statement_timeout_ms)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._writers = _sqlite_writer_queue(self.engine) if self.engine.dialect.name == "sqlite" else None

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        with self._writers.turn() if write and self._writers else nullcontext():
            session = Session(bind=self._write_engine if write else self._read_engine,
                              autoflush=False, expire_on_commit=False)
            try:
                yield session
                if write:
                    session.commit()
                else:  # nothing to commit, but ending a read can fail too (MariaDB's ROLLBACK
                    session.close()  # on a connection lost after the last statement): a 503
            except DBAPIError as exc:
                _quietly(session.rollback)
                raise translate_error(exc) from exc
            except BaseException:
                _quietly(session.rollback)
                raise
            finally:
                _quietly(session.close)

    @contextmanager
    def lookup(self) -> Iterator[Connection]:
        """A connection for a single read outside the request's session (the guard's key
        check): no Session to build and close, and in autocommit where reads are."""
        try:
            with self._read_engine.connect() as connection:
                yield connection
        except DBAPIError as exc:
            raise translate_error(exc) from exc

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

    def create_all(self, metadata, tables=None) -> None:
        try:
            metadata.create_all(self.engine, tables=tables)
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def insert_or_update(session: Session, table, values: dict, keys: list[str], on_conflict: dict) -> None:
    """INSERT ``values``; when a row with the same ``keys`` exists, apply ``on_conflict``
    to it instead, which also locks it for the rest of the transaction. One statement,
    no error to recover from when concurrent requests race to create the same row."""
    name = session.get_bind().dialect.name
    if name in ("mysql", "mariadb"):
        stmt = mysql_insert(table).values(values).on_duplicate_key_update(on_conflict)
    elif name == "postgresql":
        stmt = pg_insert(table).values(values).on_conflict_do_update(index_elements=keys, set_=on_conflict)
    else:
        stmt = sqlite_insert(table).values(values).on_conflict_do_update(index_elements=keys, set_=on_conflict)
    session.execute(stmt)


_HALF = 2**32


def integer_sum(dialect_name: str, column) -> tuple[Any, tuple]:
    """SUM of an integer column, exact at any size: (the sum to filter and order on, the two
    parts ``add_sum_parts`` adds up exactly, or none when the database's own sum is exact).

    PostgreSQL and MariaDB sum integers as NUMERIC / DECIMAL. SQLite's SUM fails past 64 bits,
    so there the high and low 32 bits of the values are summed apart (each sum fits 64 bits for
    up to 2^31 rows). The sum to filter and order on is exact while it fits 64 bits, and a REAL
    beyond (still beyond every 64-bit value a filter can name)."""
    if dialect_name != "sqlite":
        return func.sum(column), ()
    high, low = func.sum(column.bitwise_rshift(32)), func.sum(column.bitwise_and(_HALF - 1))
    top, rest = high + low.bitwise_rshift(32), low.bitwise_and(_HALF - 1)
    total = case((top.between(-(2**31), 2**31 - 1), top * _HALF + rest), else_=top * float(_HALF) + rest)
    return total, (high, low)


def add_sum_parts(high: int | None, low: int | None) -> int | None:
    return None if high is None else high * _HALF + low


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
    if isinstance(exc, IntegrityError) or _mysql_errno(exc.orig) in _MYSQL_CHECK_VIOLATIONS:
        return _integrity_error(exc)
    if isinstance(exc, DataError):
        return BadValue("a value does not fit its column in the database")
    if _is_statement_timeout(exc.orig):
        return StatementTimeout("the query ran longer than the statement timeout and was cancelled; "
                                "narrow it (a where, a smaller limit) or try again")
    cause = _storage_cause(exc.orig)
    if cause is not None:
        return DatabaseUnavailable(_STORAGE_MESSAGES[cause], cause=cause)
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return DatabaseUnavailable("the database is unavailable or busy; try again")
    return exc


_STORAGE_MESSAGES = {
    "disk_full": "the database's disk is full: nothing was written; free some space, then try again",
    "read_only": "the database is read-only (a read-only file, mount, server or transaction): it cannot be written",
    "cannot_open": "the database file cannot be opened: it, or the folder that holds it (SQLite writes "
                   "its -wal and -shm files beside it), is missing or read-only",
}
_SQLITE_CAUSES = {13: "disk_full", 8: "read_only", 14: "cannot_open"}  # SQLITE_FULL, _READONLY, _CANTOPEN
_POSTGRESQL_CAUSES = {"53100": "disk_full", "25006": "read_only"}  # disk_full, read_only_sql_transaction
# ER_DISK_FULL, ER_RECORD_FILE_FULL; --read-only, read-only mode, a READ ONLY transaction
_MYSQL_CAUSES = {1021: "disk_full", 1114: "disk_full", 1290: "read_only", 1836: "read_only", 1792: "read_only"}


def _storage_cause(orig) -> str | None:
    """Why the database cannot store anything, when that is the trouble: a full disk, a
    read-only database, a file that cannot be opened; None for anything else."""
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return _SQLITE_CAUSES.get(sqlite_code & 0xFF)  # the primary code, without the extended bits
    errno = _mysql_errno(orig)  # PyMySQL: (errno, message); its sqlstate is often a generic HY000
    if errno is not None:
        return _MYSQL_CAUSES.get(errno)
    return _POSTGRESQL_CAUSES.get(getattr(orig, "sqlstate", None))


# PyMySQL raises a CHECK violation as an OperationalError; it is a 409 like any constraint.
_MYSQL_CHECK_VIOLATIONS = (3819, 4025)  # MySQL, MariaDB


def _mysql_errno(orig) -> int | None:
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


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
