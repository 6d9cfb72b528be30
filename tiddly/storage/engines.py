"""Engines: URLs, drivers, connection settings and pools, per database. Only this package creates engines."""
from __future__ import annotations

import os
import re
import select
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    NoSuchModuleError,
)

from tiddly.storage.errors import mysql_errno
from tiddly.storage.expressions import json_contains, json_overlaps

SQLITE_BUSY_TIMEOUT_S = 30
# How a request's write scope begins where connections rest in autocommit. SQLite takes the write
# lock at BEGIN, so two writers queue on the busy timeout instead of one failing with "database is
# locked" when its deferred read upgrades; PostgreSQL names the level whatever the server's default.
WRITE_BEGIN = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN ISOLATION LEVEL READ COMMITTED"}
STATE_SCHEMA = "tiddly"  # the name Tiddly's own tables are qualified with when they live apart
POOL_IDLE_PING_S = 5  # a pooled connection idle longer than this is pinged before use
# Driverless URLs, as hosting services set DATABASE_URL, get the drivers Tiddly ships.
SHIPPED_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                   "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}
# A URL's own word that a transaction-mode pooler (PgBouncer, Supavisor, ...) sits in front of
# PostgreSQL: ?pooler=transaction. Tiddly reads it and takes it out before the driver sees the URL.
POOLER_PARAMETER, POOLER_MODES = "pooler", ("transaction",)
REPLICA_CONNECT_TIMEOUT_S = 3  # a replica that does not answer a connect is skipped, not waited for


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
    pooler = parsed.query.get(POOLER_PARAMETER)
    if pooler is not None and (pooler not in POOLER_MODES or parsed.get_backend_name() != "postgresql"):
        raise CannotOpen(f"?{POOLER_PARAMETER}={pooler} in {_redacted(str(url))!r}: Tiddly knows "
                         f"?{POOLER_PARAMETER}=transaction, on a PostgreSQL URL (a pooler such as PgBouncer "
                         "in transaction mode between Tiddly and PostgreSQL)")
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


def pooled(url: URL) -> bool:
    """Does ``url`` (from ``engine_url``) go through a transaction-mode pooler (``?pooler=transaction``)?"""
    return url.query.get(POOLER_PARAMETER) in POOLER_MODES


def _redacted(text: str) -> str:
    return re.sub(r":[^:@/]*@", ":***@", text)


def explain(exc: DBAPIError, url: URL) -> str:
    """One or two lines for a person: why the database at ``url`` cannot be opened."""
    errno, args = mysql_errno(exc.orig), getattr(exc.orig, "args", ())
    message = str(args[1] if errno is not None and len(args) > 1 else exc.orig).strip()
    where = f"{url.host or 'localhost'}:{url.port or ''}".rstrip(":")
    backend = url.get_backend_name()
    if backend == "sqlite":
        reason = _sqlite_open_failure(url.database or "", message)
    elif errno == 1049 or 'database "' in message and "does not exist" in message:
        create = f"createdb {url.database}" if backend == "postgresql" else f"CREATE DATABASE {url.database}"
        reason = f"the database {url.database!r} does not exist on {where}\ncreate it ({create}) or fix the URL"
    elif "unsupported startup parameter" in message:  # PgBouncer refuses what it cannot pass on
        reason = (f"the server at {where} refused a startup parameter: a connection pooler (PgBouncer) in "
                  f"transaction mode? add ?{POOLER_PARAMETER}=transaction to the URL (docs/scaling.md)")
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
    return make_engines(url, statement_timeout_ms)[0]


def make_engines(url: str, statement_timeout_ms: int, home: StateHome | None = None,
                 replica: bool = False) -> tuple[Engine, Engine]:
    """The engine for transactions and the engine for reads (``_engines_for``), with Tiddly's
    own tables (those of the default schema, ``None``) sent to ``home`` when it is given.
    ``replica``: a read replica's, which gives up on a connect after REPLICA_CONNECT_TIMEOUT_S."""
    engines = _engines_for(engine_url(url), statement_timeout_ms, home, replica)
    if home is None:
        return engines
    return tuple(e.execution_options(schema_translate_map={None: home.schema}) for e in engines)


def _engines_for(parsed: URL, statement_timeout_ms: int, home: StateHome | None,
                 replica: bool = False) -> tuple[Engine, Engine]:
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
        return _postgresql_engines(parsed, statement_timeout_ms, replica)
    if backend in ("mysql", "mariadb"):
        engine = _ping_when_idle(create_engine(parsed, pool_recycle=3600))
        _mysql_session_setup(engine, statement_timeout_ms)
        return engine, engine
    engine = _ping_when_idle(create_engine(parsed))
    return engine, engine


def _postgresql_engines(parsed: URL, statement_timeout_ms: int, replica: bool) -> tuple[Engine, Engine]:
    """Connections rest in autocommit: switching a connection out of it and back cost about
    250,000 instructions per checkout. The engine for DDL and migrations switches; a request's
    write scope sends its own BEGIN instead (WRITE_BEGIN).

    Directly connected, the statement timeout is set once per connection, at connect, and
    psycopg prepares a statement run five times on that connection. Through a transaction-mode
    pooler nothing may outlive a transaction, since the next transaction may run on another
    server connection (or the same one for another client): no prepared statements, and the
    timeout is a SET LOCAL in each transaction (``Database`` sends it with its BEGIN)."""
    through_pooler = pooled(parsed)
    parsed = parsed.difference_update_query([POOLER_PARAMETER])
    connect_args: dict = {"prepare_threshold": None} if through_pooler else \
        {"options": f"-c statement_timeout={int(statement_timeout_ms)}"}
    if replica:
        connect_args["connect_timeout"] = REPLICA_CONNECT_TIMEOUT_S
    engine = _ping_when_idle(create_engine(parsed, connect_args=connect_args, isolation_level="AUTOCOMMIT"))
    transactional = engine.execution_options(isolation_level="READ COMMITTED")
    if through_pooler and statement_timeout_ms:
        set_timeout = local_statement_timeout(statement_timeout_ms)

        @event.listens_for(transactional, "begin")
        def _on_begin(connection):  # DDL, migrations, exports: psycopg has just sent BEGIN
            connection.exec_driver_sql(set_timeout)

    return transactional, engine


def local_statement_timeout(statement_timeout_ms: int) -> str:
    """The statement that sets the timeout for the rest of one transaction only."""
    return f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"


def _ping_when_idle(engine: Engine) -> Engine:
    """Ping a pooled connection before use only when it sat idle for a while, or when the
    server has spoken on it since it came back to the pool.

    pool_pre_ping would cost a round trip on every checkout, one per request or more.
    An idle connection is the one a database restart or an idle timeout closes; one
    that breaks while busy fails its request (a 503) and the pool drops it. A server that
    shuts down (a restart, a standby stopped) tells its idle clients so, or closes their
    sockets: a socket with something to read while the connection rests is such a one, found
    with a poll of the socket, no round trip."""
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) < POOL_IDLE_PING_S \
                and not _server_spoke(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure means "get another connection"
            raise DisconnectionError("a pooled connection failed its ping") from exc

    return engine


def _server_spoke(dbapi_connection) -> bool:
    """psycopg: has the server sent anything (a shutdown's notice, the end of the connection) to a
    connection that is idle in the pool? Idle, it has no reason to."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except Exception:  # noqa: BLE001 - a connection without a socket is a dead one
        return True
    return bool(readable)


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
        # JSON containment as PostgreSQL's jsonb has it (storage/expressions.py)
        dbapi_connection.create_function("tiddly_json_contains", 2, json_contains, deterministic=True)
        dbapi_connection.create_function("tiddly_json_overlaps", 2, json_overlaps, deterministic=True)

    transactional = pooled.execution_options()

    @event.listens_for(transactional, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN")

    return transactional, pooled


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
