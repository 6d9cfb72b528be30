"""``Database``: the engines of one database and the per-request session scope.

``Database.session()`` is the request boundary: it yields a Session, commits once when the
block succeeds, rolls back on any exception, always closes, and turns driver errors into
typed ``errors``. A write scope exits only once its work is durably committed, then runs the
callbacks registered with ``committed.after_commit``; on SQLite its commit is its group's
(``groups.py``).
"""
from __future__ import annotations

import hashlib
import logging
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

from tiddly.errors import DatabaseUnavailable
from tiddly.storage.committed import run_after_commit
from tiddly.storage.engines import (
    WRITE_BEGIN,
    CannotOpen,
    StateHome,
    engine_url,
    explain,
    local_statement_timeout,
    make_engines,
    pooled,
)
from tiddly.storage.errors import quietly, translate_error, unreachable
from tiddly.storage.pipeline import (
    OwedRead,
    begin_with_first_statement,
    forget_begin,
    read_with_first_statement,
    send_begin_with_first_statement,
)
from tiddly.storage.replicas import (
    DEFAULT_MAX_LAG_S,
    LAST_WRITE,
    WRITE_POSITIONS,
    Replica,
    ReplicaSet,
    Writer,
    record_write_sql,
)
from tiddly.storage.writers import sqlite_writer_queue

log = logging.getLogger("tiddly")

SCHEMA_LOCK_WAIT_S = 60  # how long a starting Tiddly waits for another to finish preparing the schema


def _begin(dialect_name: str, through_pooler: bool, statement_timeout_ms: int) -> str | None:
    """What a transaction scope sends first, in one round trip: BEGIN (``WRITE_BEGIN``) and,
    through a pooler, the statement timeout for this transaction only."""
    begin = WRITE_BEGIN.get(dialect_name)
    if begin and through_pooler and statement_timeout_ms:
        begin = f"{begin}; {local_statement_timeout(statement_timeout_ms)}"
    return begin


def _primary_down() -> DatabaseUnavailable:
    return DatabaseUnavailable("the primary database cannot be reached: writes are refused until it is back "
                               "(reads are answered by a read replica); try again later", cause="primary_down")


def _first_line(exc: DBAPIError) -> str:
    return (str(exc.orig).strip().splitlines() or [exc.__class__.__name__])[0]


# The key of the PostgreSQL advisory lock a starting Tiddly holds (advisory locks are per database).
_SCHEMA_LOCK_KEY = int.from_bytes(b"tiddly", "big")


class Database:
    """One engine (and its pool) for the process, and one per read replica; a fresh Session per request.

    Reads (``session()``) go to a read replica when there are any and one is eligible (``ReplicaSet``),
    otherwise to the primary; writes, and reads inside a write, to the primary."""

    def __init__(self, url: str, statement_timeout_ms: int = 30_000, state_apart: bool = False,
                 replicas: tuple[str, ...] | list[str] = (), replica_max_lag_s: float = DEFAULT_MAX_LAG_S,
                 direct_url: str | None = None):
        """``state_apart``: Tiddly's own tables live apart from the database's (a StateHome).
        ``replicas``: URLs of PostgreSQL streaming standbys of this database (read replicas).
        ``direct_url``: the primary without a pooler between, for what outlives a transaction (LISTEN)."""
        parsed = engine_url(url)
        self.state_home = StateHome.beside(parsed) if state_apart else None
        self.pooled = pooled(parsed)
        self._statement_timeout_ms = int(statement_timeout_ms)
        self.engine, self._read_engine = make_engines(url, statement_timeout_ms, self.state_home)
        sqlite = self.engine.dialect.name == "sqlite"
        # SQLite and PostgreSQL: session() begins a write itself, on a connection that rests in
        # autocommit (no listener to dispatch, no isolation level to switch and switch back).
        # Through a pooler the statement timeout rides along, in the same round trip.
        self._begin = _begin(self.engine.dialect.name, self.pooled, statement_timeout_ms)
        self._read_begin = self._begin if self.pooled and statement_timeout_ms else None
        self._write_engine = self._read_engine if self._begin else self.engine
        self._writers = sqlite_writer_queue(self.engine, self.state_home) if sqlite else None
        # PostgreSQL through psycopg (3): the BEGIN goes with the first statement (storage/pipeline.py)
        self._lazy_begin = self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg"
        if self._lazy_begin:
            send_begin_with_first_statement(self.engine.dialect)
        self._driver_sql: dict = {}  # statement -> what first_row sends for it
        self._with_last_write: dict = {}  # statement -> it with the writer's last write position added
        if replicas and self.engine.dialect.name != "postgresql":
            raise CannotOpen("read replicas (--read-replica) are PostgreSQL streaming standbys; "
                             f"the database is {self.engine.dialect.name}")
        self.replicas = ReplicaSet(self._read_engine, list(replicas), replica_max_lag_s, statement_timeout_ms,
                                   self.state_home)
        self._replica_begin = {r: _begin("postgresql", True, statement_timeout_ms) if r.pooled
                               and statement_timeout_ms else None for r in self.replicas.replicas}
        schema = self.state_home.schema if self.state_home else None
        self._record_write = record_write_sql(schema) if self.replicas else None
        self.direct_url = direct_url
        if direct_url and pooled(engine_url(direct_url)):
            raise CannotOpen("--direct-database-url must reach PostgreSQL directly, not through a pooler")
        self._direct = None

    @classmethod
    def for_config(cls, config, state_apart: bool = False) -> "Database":
        """The database a ``Config`` names: its URL, statement timeout, read replicas, direct URL."""
        return cls(config.database_url, config.statement_timeout_ms, state_apart=state_apart,
                   replicas=config.read_replica_urls, replica_max_lag_s=config.replica_max_lag_s,
                   direct_url=config.direct_database_url or None)

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = False, writer: Writer | None = None, latest: bool = False,
                snapshot: bool = False, owed: OwedRead | None = None) -> Iterator[Session]:
        """The request boundary. ``write``: on the primary, committed at the end; the scope exits
        only once its work is durably committed (on SQLite, its group's COMMIT: ``groups.py``),
        then runs the callbacks registered with ``committed.after_commit``. A read goes to a
        replica that has replayed ``writer``'s last write, within the lag bound, and to the primary
        when none has or when ``latest`` (the read must see every committed write). ``snapshot``:
        a read in one transaction on the primary (a streamed export: PostgreSQL's server-side
        cursors live in one), where other reads run each statement on its own. ``owed``: a read
        sent with the scope's first statement (``owed_read``), on the primary."""
        if owed is not None and (snapshot or not self.defers_reads):  # a server-side cursor takes no pipeline
            self.settle(owed)
            owed = None
        if write:
            grouped = self._writers.session(self._write_engine, self._begin) if self._writers else None
            if grouped is not None:  # SQLite: group commit
                with grouped as session:
                    yield session
                run_after_commit(session)
                return
            with self._writers.turn() if self._writers else nullcontext():
                with self._scope(self._write_engine, self._begin, commit=True,
                                 writer=writer if self._record_write else None, owed=owed) as session:
                    yield session
            run_after_commit(session)
            return
        if snapshot:
            with self._scope(self.engine, None) as session:
                yield session
            return
        replica = self.replicas.choose(writer) if self.replicas and not latest else None
        if replica is None:
            with self._scope(self._read_engine, self._read_begin, owed=owed) as session:
                yield session
            return
        with self._replica_scope(replica) as session:
            yield session

    @contextmanager
    def _scope(self, engine, begin: str | None, commit: bool = False, replica: Replica | None = None,
               session: Session | None = None, writer: Writer | None = None,
               owed: OwedRead | None = None) -> Iterator[Session]:
        session = session or Session(bind=engine, autoflush=False, expire_on_commit=False)
        owing = None
        try:
            if begin and commit and self._lazy_begin and ";" not in begin:  # storage/pipeline.py
                owing = session.connection().connection.dbapi_connection
                begin_with_first_statement(owing, begin)
            elif begin:
                session.connection().exec_driver_sql(begin)
            if owed is not None:
                owing = session.connection().connection.dbapi_connection
                read_with_first_statement(owing, owed)
            yield session
            if commit:
                session.commit()
                if self.replicas:
                    self.replicas.primary_up = True  # it answers again: read-your-writes holds at once
                if writer is not None:
                    self._record(session, writer)
            else:  # nothing to commit, but ending a read can fail too (MariaDB's ROLLBACK
                session.close()  # on a connection lost after the last statement): a 503
        except DBAPIError as exc:
            quietly(session.rollback)
            if replica is not None and exc.connection_invalidated:
                replica.mark_down(_first_line(exc))
            elif commit and self.replicas and unreachable(exc):
                self.replicas.mark_primary_down(_first_line(exc))
                raise _primary_down() from exc
            raise translate_error(exc) from exc
        except BaseException:
            quietly(session.rollback)
            raise
        finally:
            if owing is not None:
                forget_begin(owing)
            quietly(session.close)

    @contextmanager
    def _replica_scope(self, replica: Replica) -> Iterator[Session]:
        """A read on ``replica``; one that cannot be had (it went down since the last probe)
        is skipped for the primary, with no error."""
        session = Session(bind=replica.engine, autoflush=False, expire_on_commit=False)
        try:
            session.connection()  # a pooled connection, or a new one: no round trip for the former
        except DBAPIError as exc:
            quietly(session.close)
            replica.mark_down(_first_line(exc))
            with self._scope(self._read_engine, self._read_begin) as primary_session:
                yield primary_session
            return
        with self._scope(replica.engine, self._replica_begin[replica], replica=replica, session=session) as s:
            yield s

    def _record(self, session: Session, writer: Writer) -> None:
        """After the commit: where this writer's last write is, for its next read. The write stands
        whatever happens here; should this fail, that read may come from a replica that lags."""
        try:
            session.connection().exec_driver_sql(self._record_write, {"writer": writer.name})
        except DBAPIError as exc:
            log.warning("could not record a write's position for read-your-writes: %s", _first_line(exc))

    def identify(self, statement, params: dict | None, writer: str,
                 typed: bool = False) -> tuple[tuple | None, Writer]:
        """The key check: the first row of ``statement`` (``first_row``; ``typed``: through a
        SQLAlchemy result, which converts values), read on the primary, and the ``Writer``
        named ``writer`` with the position of its last write, read in the same statement.
        With the primary down, the row comes from a replica (a revocation it has not replayed
        yet is not seen) and the position is unknown."""
        if not self.replicas:
            return self._first(statement, params, typed), Writer(writer)
        if self.replicas.primary_up:
            try:
                row = self._first(self._last_write_added(statement), {**(params or {}), "tiddly_writer": writer},
                                  typed)
                return (tuple(row[:-1]), Writer(writer, row[-1])) if row is not None else (None, Writer(writer))
            except DatabaseUnavailable as exc:
                self.replicas.mark_primary_down(exc.message)
        replica = self.replicas.any_up()
        if replica is None:
            raise _primary_down()
        return self._first(statement, params, typed, replica.engine), Writer(writer)

    def _last_write_added(self, statement):
        found = self._with_last_write.get(statement)
        if found is None:
            found = self._with_last_write[statement] = statement.add_columns(LAST_WRITE)
        return found

    def _first(self, statement, params, typed: bool, engine=None):
        if not typed:
            return self.first_row(statement, params, engine)
        try:
            with (engine or self._read_engine).connect() as connection:
                return connection.execute(statement, params or {}).first()
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def first_row(self, statement, params: dict | None = None, engine=None) -> tuple | None:
        """The first row of one read (the guard's key check, on every request), sent through the
        driver on a pooled connection: no Session, no Connection, no result object to build.
        For prebuilt statements whose parameters and columns need no conversion (strings,
        numbers, NULL tests): the row is the driver's tuple. ``engine``: a replica's."""
        sql, names, defaults = self._driver_sql.get(statement) or self._compile_for_driver(statement)
        values = {**defaults, **(params or {})}
        engine = engine or self._read_engine
        dialect = engine.dialect
        try:
            raw = engine.raw_connection()
        except dialect.loaded_dbapi.Error as exc:  # no connection to be had: the database is down
            raise translate_error(DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error,
                                                      connection_invalidated=True, dialect=dialect)) from exc
        except DBAPIError as exc:
            raise translate_error(exc) from exc
        try:
            cursor = raw.cursor()
            cursor.execute(sql, tuple(values[n] for n in names) if names is not None else values)
            row = cursor.fetchone()
            cursor.close()
            return row
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw.dbapi_connection, None)
            if lost:
                raw.invalidate()  # the pool drops it rather than hand it to the next request
            raise translate_error(DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error,
                                                      connection_invalidated=lost, dialect=dialect)) from exc
        finally:
            quietly(raw.close)

    @property
    def defers_reads(self) -> bool:
        """Whether a read may travel with a scope's first statement (``session(owed=...)``):
        PostgreSQL through psycopg, every read on the primary (no replicas)."""
        return self._lazy_begin and not self.replicas

    def owed_read(self, statement, params: dict) -> OwedRead:
        """``statement`` (prebuilt, as ``first_row`` takes it) to be read with a scope's first
        statement; ``settle`` reads it now if none carried it."""
        sql, names, defaults = self._driver_sql.get(statement) or self._compile_for_driver(statement)
        values = {**defaults, **params}
        return OwedRead(statement, values, sql, tuple(values[n] for n in names) if names is not None else values)

    def settle(self, owed: OwedRead) -> tuple | None:
        """The owed read's row: as it came with a statement, or read now."""
        if not owed.done:
            owed.row, owed.done = self.first_row(owed.statement, owed.values), True
        return owed.row

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
        """Does the database answer? With read replicas: the primary, or failing that a replica
        (reads are still answered then)."""
        try:
            with self.session(latest=True) as session:
                session.execute(select(1))
        except DatabaseUnavailable:
            replica = self.replicas.any_up() if self.replicas else None
            if replica is None:
                raise

    def health(self) -> dict:
        """What /-/health says beyond the ping: with read replicas, the primary's and each replica's state."""
        return self.replicas.describe() if self.replicas else {}

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
            with self._read_engine.connect() as connection:
                if self.dialect_name == "postgresql" and not self.pooled:
                    self._check_direct(connection)
        except DBAPIError as exc:
            raise CannotOpen(explain(exc, self.engine.url)) from None

    def _check_direct(self, connection: Connection) -> None:
        """The statement timeout sent at connect holds: a pooler that drops the ``options`` startup
        parameter (ignore_startup_parameters) would let Tiddly connect, then fail under load on
        psycopg's prepared statements, and run with no timeout. Once, at start."""
        timeout = connection.exec_driver_sql(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'").scalar()
        if timeout != self._statement_timeout_ms:
            raise CannotOpen(f"the statement timeout sent at connect ({self._statement_timeout_ms} ms) does not hold "
                             f"on {self.engine.url.render_as_string(hide_password=True)} ({timeout} ms): a connection "
                             "pooler that ignores the 'options' startup parameter? add ?pooler=transaction to the "
                             "URL (docs/scaling.md)")

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Hold the database's own lock while the schema is checked and made, so processes
        starting together on one database, on any host, take turns: PostgreSQL's advisory
        lock, MariaDB's GET_LOCK (per database name), SQLite's writer queue (one host).

        PostgreSQL's is a transaction's lock, held by a transaction left open until the schema is
        ready and ended by its COMMIT: nothing outlives it, so it holds through a pooler too."""
        if self.dialect_name == "sqlite":
            with self._writers.turn() if self._writers else nullcontext():
                yield
            return
        if self.dialect_name == "postgresql":
            take = text("SELECT true FROM pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
            release, engine = None, self.engine
        else:
            name = f"tiddly-schema-{hashlib.sha256(str(self.engine.url.database).encode()).hexdigest()[:40]}"
            take = text("SELECT GET_LOCK(:name, :wait) = 1"), {"name": name, "wait": SCHEMA_LOCK_WAIT_S}
            release, engine = (text("SELECT RELEASE_LOCK(:name)"), {"name": name}), self._read_engine
        with engine.connect() as connection:
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
                if release is not None:
                    connection.execute(*release)
                connection.commit()

    @contextmanager
    def direct_connection(self) -> Iterator[Connection]:
        """A connection to the primary with no pooler between, for what must outlive a transaction
        (LISTEN, for a change feed): from ``direct_url`` when given, else the database URL unless it
        goes through a pooler, where this refuses, naming the option."""
        url = self.direct_url or (None if self.pooled else self.engine.url)
        if url is None:
            raise CannotOpen("this needs a direct connection to PostgreSQL (LISTEN outlives a transaction), "
                             "and the database URL goes through a pooler (?pooler=transaction): give "
                             "--direct-database-url (TIDDLY_DIRECT_DATABASE_URL)")
        if self._direct is None:
            self._direct = make_engines(url, 0, self.state_home)[1]
        with self._direct.connect() as connection:
            yield connection

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
        if self.replicas:  # read-your-writes: where each writer's last write is (replicas.py)
            self.create_all(WRITE_POSITIONS.metadata)

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
        self.replicas.dispose()
        if self._direct is not None:
            self._direct.dispose()
