"""Engines, the per-request session scope, and every dialect difference in one place.

Only this module creates engines. ``Database.session()`` is the request
boundary: it yields a Session, commits once when the block succeeds, rolls back
on any exception, always closes, and turns driver errors into typed ``errors``.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import case, create_engine, event, func, inspect, select, text
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

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
# How a request's write scope begins where connections rest in autocommit. SQLite takes the write
# lock at BEGIN, so two writers queue on the busy timeout instead of one failing with "database is
# locked" when its deferred read upgrades; PostgreSQL names the level whatever the server's default.
_WRITE_BEGIN = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN ISOLATION LEVEL READ COMMITTED"}
STATE_SCHEMA = "tiddly"  # the name Tiddly's own tables are qualified with when they live apart
SCHEMA_LOCK_WAIT_S = 60  # how long a starting Tiddly waits for another to finish preparing the schema
POOL_IDLE_PING_S = 5  # a pooled connection idle longer than this is pinged before use
# Driverless URLs, as hosting services set DATABASE_URL, get the drivers Tiddly ships.
SHIPPED_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                   "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


class CannotOpen(Exception):
    """The database URL is unusable or the database cannot be reached; the message says why."""


def engine_url(url: str | URL) -> URL:
    """The URL to make an engine from: parsed, with a shipped driver for a driverless form,
    and checked that SQLAlchemy knows its kind and its driver is installed."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CannotOpen(f"{_redacted(str(url))!r} is not a database URL; write it like "
                         "sqlite:///file.db, postgresql://user:password@host/dbname or "
                         "mysql://user:password@host/dbname") from None
    parsed = parsed.set(drivername=SHIPPED_DRIVERS.get(parsed.drivername, parsed.drivername))
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise CannotOpen(f"unknown kind of database {parsed.get_backend_name()!r} in the URL; "
                         "Tiddly speaks sqlite, postgresql and mysql/mariadb") from None
    except ImportError as exc:
        raise CannotOpen(f"the URL asks for the driver {parsed.drivername!r}, whose module {exc.name!r} "
                         "is not installed; leave the driver out (postgresql://, mysql://) to use the "
                         "one Tiddly ships") from None
    return parsed


def _redacted(text: str) -> str:
    return re.sub(r":[^:@/]*@", ":***@", text)


def _explain(exc: DBAPIError, url: URL) -> str:
    """One or two lines for a person: why the database at ``url`` cannot be opened."""
    errno, args = _mysql_errno(exc.orig), getattr(exc.orig, "args", ())
    message = str(args[1] if errno is not None and len(args) > 1 else exc.orig).strip()
    where = f"{url.host or 'localhost'}:{url.port or ''}".rstrip(":")
    backend = url.get_backend_name()
    if backend == "sqlite":
        reason = _sqlite_open_failure(url.database or "", message)
    elif errno == 1049 or 'database "' in message and "does not exist" in message:
        create = f"createdb {url.database}" if backend == "postgresql" else f"CREATE DATABASE {url.database}"
        reason = f"the database {url.database!r} does not exist on {where}\ncreate it ({create}) or fix the URL"
    elif "Connection refused" in message:
        reason = f"nothing is listening at {where}\nis the database server running, on that host and port?"
    else:  # the driver's own words, from the line that names the problem
        lines = [line.strip() for line in message.splitlines() if line.strip()] or [exc.__class__.__name__]
        reason = next((line.split("FATAL:", 1)[1].strip() for line in lines if "FATAL:" in line), lines[0])
    return f"cannot open the database {url.render_as_string(hide_password=True)}: {reason}"


def _sqlite_open_failure(path: str, message: str) -> str:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        return f"the directory {folder} does not exist"
    if "unable to open" in message:
        return f"cannot create or open the file {path} (check the permissions of {folder})"
    return message.splitlines()[0]


@dataclass(frozen=True)
class StateHome:
    """Where Tiddly's own tables (API keys, login tokens, idempotency keys, its secret) live
    when they must stay out of the database's own schema (``--reflect``): in the same
    database server, reached on the same connection, so that one transaction spans them and
    the database's tables (an Idempotency-Key commits with its write)."""
    schema: str               # what statements qualify Tiddly's tables with
    place: str                # for people: 'schema "tiddly"', 'database shop_tiddly', 'file /x/shop.db-tiddly'
    sidecar: str | None = None  # SQLite: the file attached as ``schema``

    @classmethod
    def beside(cls, url: URL) -> "StateHome":
        backend = url.get_backend_name()
        if backend == "sqlite":
            path = url.database or ""
            sidecar = ":memory:" if path in ("", ":memory:") or path.startswith("file:") \
                else str(Path(path).resolve()) + "-tiddly"
            return cls(STATE_SCHEMA, f"file {sidecar}", sidecar)
        if backend == "postgresql":
            return cls(STATE_SCHEMA, f'schema "{STATE_SCHEMA}"')
        name = f"{url.database}_{STATE_SCHEMA}"  # MariaDB: a database of its own, on the same server
        return cls(name, f"database {name}")


def make_engine(url: str, statement_timeout_ms: int = 30_000) -> Engine:
    """The engine for transactions (and DDL, migrations, exports) on ``url``."""
    return _engines(url, statement_timeout_ms)[0]


def _engines(url: str, statement_timeout_ms: int, home: StateHome | None = None) -> tuple[Engine, Engine]:
    """The engine for transactions and the engine for reads (``_engines_for``), with Tiddly's
    own tables (those of the default schema, ``None``) sent to ``home`` when it is given."""
    engines = _engines_for(engine_url(url), statement_timeout_ms, home)
    if home is None:
        return engines
    return tuple(e.execution_options(schema_translate_map={None: home.schema}) for e in engines)


def _engines_for(parsed: URL, statement_timeout_ms: int, home: StateHome | None) -> tuple[Engine, Engine]:
    """The engine for transactions, and the engine of read-only scopes: each statement on
    its own, outside a transaction, where the database reads the same that way.

    PostgreSQL's READ COMMITTED gives every statement its own snapshot, in a transaction
    or not, so autocommit reads the same data and saves the BEGIN and COMMIT round trips;
    SQLite then reads as PostgreSQL does. MySQL keeps the transaction: its REPEATABLE READ
    snapshot spans the statements, and switching autocommit would itself cost a round trip."""
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engines(parsed, home)
    if backend == "postgresql":
        # Connections rest in autocommit: switching a connection out of it and back cost about
        # 250,000 instructions per checkout. The engine for DDL and migrations switches; a
        # request's write scope sends its own BEGIN instead (_WRITE_BEGIN).
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


def _sqlite_engines(url, home: StateHome | None) -> tuple[Engine, Engine]:
    """Connections in the driver's autocommit mode; transactions begin with our own BEGIN:
    the transactional engine's "begin" listener sends it, and a request's write scope
    (``Database.session``) sends BEGIN IMMEDIATE itself, on the pooled engine's connections.

    The listener sits on an engine derived from the pooled one, not on the pooled one: a
    connection-level listener puts every statement of its engine through event dispatch,
    which cost each request that reads or writes about 200,000 instructions.

    With a ``home``, the file is someone else's, and Tiddly's sidecar file is attached, once it
    exists, so one transaction spans both (atomic across them when neither is in WAL mode).
    Opening a file changes nothing in it: WAL is switched on when Tiddly makes its own tables
    (``create_all``), never in a file that is someone else's."""
    pooled = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(pooled, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let the "begin" listener emit BEGIN itself (pysqlite's own implicit
        # BEGIN is deferred and cannot take the write lock up front).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if home is not None and (home.sidecar == ":memory:" or os.path.exists(home.sidecar)):  # create_state()
            cursor.execute(f"ATTACH DATABASE ? AS {home.schema}", (home.sidecar,))
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    transactional = pooled.execution_options()

    @event.listens_for(transactional, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN")

    return transactional, pooled


class _SqliteWriterQueue:
    """SQLite has one writer at a time; its writers wait their turn here, not in SQLite.

    SQLite's busy handler polls for the write lock with sleeps of up to 100 ms, so under
    load a writer sleeps long after the lock came free while another takes it again and
    again. Here the threads of a process queue on a lock and are woken the moment the
    writer before them is done, and processes take turns on an exclusive lock on a file
    beside Tiddly's own database file (``<tiddly.db>.writer-lock``, or with ``--reflect``
    ``<sidecar>.writer-lock``: never beside someone else's file), polled every 5 ms at most.
    A write scope opened inside another one in the same thread passes (and then waits on
    SQLite's own lock, as before)."""

    def __init__(self, lock_path: str):
        self._threads = threading.RLock()
        self._path = lock_path
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


# The key of the PostgreSQL advisory lock a starting Tiddly holds (advisory locks are per database).
_SCHEMA_LOCK_KEY = int.from_bytes(b"tiddly", "big")


def _busy() -> DatabaseUnavailable:
    return DatabaseUnavailable("the database is busy with other writes; try again")


# One queue per database file and process. A forked child (a granian or gunicorn worker) starts with
# none: the parent's open lock file would be shared with it, and shared is not exclusive.
_SQLITE_WRITERS: dict[str, _SqliteWriterQueue] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()
os.register_at_fork(after_in_child=_SQLITE_WRITERS.clear)


def _sqlite_writer_queue(engine: Engine, home: StateHome | None) -> _SqliteWriterQueue | None:
    path = home.sidecar if home else engine.url.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None  # an in-memory database has one connection's worth of writers anyway
    lock_path = str(Path(path).resolve()) + ".writer-lock"
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(lock_path, _SqliteWriterQueue(lock_path))


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


@compiles(UnaryExpression, "mysql")
@compiles(UnaryExpression, "mariadb")
def _mysql_nulls_placement(element, compiler, **kw):
    """MySQL and MariaDB have no NULLS FIRST/LAST: order by ``col IS NULL`` before the column
    (a NULL's rank is 1), the rest as every other database reads it."""
    if element.modifier not in (operators.nulls_first_op, operators.nulls_last_op):
        return compiler.visit_unary(element, **kw)
    ordered = element.element  # col ASC or col DESC
    rank = "DESC" if element.modifier is operators.nulls_first_op else "ASC"
    return f"{compiler.process(ordered.element.is_(None), **kw)} {rank}, {compiler.process(ordered, **kw)}"


class Database:
    """One engine (and its pool) for the process; a fresh Session per request."""

    def __init__(self, url: str, statement_timeout_ms: int = 30_000, state_apart: bool = False):
        """``state_apart``: Tiddly's own tables live apart from the database's (a StateHome)."""
        self.state_home = StateHome.beside(engine_url(url)) if state_apart else None
        self.engine, self._read_engine = _engines(url, statement_timeout_ms, self.state_home)
        sqlite = self.engine.dialect.name == "sqlite"
        # SQLite and PostgreSQL: session() begins a write itself, on a connection that rests in
        # autocommit (no listener to dispatch, no isolation level to switch and switch back).
        self._begin = _WRITE_BEGIN.get(self.engine.dialect.name)
        self._write_engine = self._read_engine if self._begin else self.engine
        self._writers = _sqlite_writer_queue(self.engine, self.state_home) if sqlite else None
        self._driver_sql: dict = {}  # statement -> what first_row sends for it

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        with self._writers.turn() if write and self._writers else nullcontext():
            session = Session(bind=self._write_engine if write else self._read_engine,
                              autoflush=False, expire_on_commit=False)
            try:
                if write and self._begin:
                    session.connection().exec_driver_sql(self._begin)
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
                _quietly(raw.close)

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
            raise CannotOpen(_explain(exc, self.engine.url)) from None

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
