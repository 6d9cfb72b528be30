"""Group commit on SQLite: the writes of one process that queue together share one transaction and
one COMMIT, so the COMMIT's wait for the disk is paid once for all of them.

SQLite takes one writer at a time, and with ``synchronous`` FULL (its default, left as it is) each
COMMIT waits for the disk. Writers already take turns (``writers.py``); here the writer whose turn
ends, when others of its process wait, passes the turn on without committing: the next one's work
goes into the same transaction, under a savepoint of its own. The writer that ends its turn with
nobody waiting, or when the group has been open ``MAX_GROUP_S``, sends the one COMMIT for all.

For each write scope (``WriteGroups.session``, beneath ``Database.session(write=True)``):
- its turn from its first statement: the scope joins a group when its Session first needs the
  database, so what it does before (reading a request's body, checking values) keeps nobody waiting;
  a scope that sends no statement joins none;
- its own outcome: its work runs under a SAVEPOINT; when its block raises, its work is rolled back
  to the savepoint and it gets its own error at once, and the others' work is kept;
- durable when it returns: the scope exits only after the group's COMMIT (``synchronous`` as it is:
  FULL syncs the WAL to disk), so an answer sent after the scope, a 201, never names a write that a
  crash can lose; if the COMMIT fails, every scope of the group raises the COMMIT's error and nothing
  of the group is written;
- a short wait for companions: a group takes no new member once it is ``MAX_GROUP_S`` old, so a
  scope waits at most that, plus the scope that is running then, plus the COMMIT;
- a group dies whole when SQLite rolls the transaction back itself (a full disk, an I/O error,
  an interrupt during a scope): the scopes of the group that had finished then raise that error
  too, never a success;
- alone where a failure shows only at COMMIT: a deferred foreign key (``DEFERRABLE INITIALLY
  DEFERRED``) is checked at COMMIT, where one scope's violation would fail the others' writes, so
  a file whose schema has one commits each scope alone (looked up when the process opens its
  first group; a violation met at a group's COMMIT, from a schema changed since, answers a 503 to
  the group's scopes, nothing of it written, and sends every later scope alone).

Only the thread whose turn it is touches the open group, its connection and its savepoints, so
the scopes of a group run one after another, never interleaved.
"""
from __future__ import annotations

import copy
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from tiddly.errors import DatabaseUnavailable
from tiddly.storage import engines
from tiddly.storage.errors import quietly, translate_error

MAX_GROUP_S = 0.002  # a group older than this takes no new member: no scope waits long for companions
MAX_MEMBERS = 64


class _Group:
    """One open transaction (BEGIN IMMEDIATE sent, the lock file held) and the scopes that joined it."""

    def __init__(self, engine: Engine, connection: Connection):
        self.engine, self.connection = engine, connection
        self.opened = time.monotonic()
        self.members = 0
        self.alive = True           # False once SQLite rolled the transaction back itself
        self.error: Exception | None = None  # why the group did not commit: every member's answer
        self.over = threading.Event()  # set once the group has committed, or failed to

    def in_transaction(self) -> bool:
        return self.connection.connection.dbapi_connection.in_transaction


class _MemberSession(Session):
    """A write scope's Session: it joins a group (``WriteGroups.join``) when it first needs the
    database, and keeps its work under a savepoint of the group's transaction."""

    def __init__(self, groups: WriteGroups, engine: Engine, begin: str):
        super().__init__(autoflush=False, expire_on_commit=False, join_transaction_mode="create_savepoint")
        self._groups, self._engine, self._begin = groups, engine, begin
        self.group: _Group | None = None

    def get_bind(self, mapper: Any = None, **kw: Any) -> Connection:
        if self.group is None:
            self.group = self._groups.join(self._engine, self._begin)
        return self.group.connection


class WriteGroups:
    """The open group of one SQLite file's writers in this process (``writers.SqliteWriterQueue``)."""

    def __init__(self, queue):
        self._queue = queue
        self._open: _Group | None = None
        self._alone: bool | None = None  # every scope commits alone (deferred foreign keys); None: not yet looked

    @contextmanager
    def session(self, engine: Engine, begin: str) -> Iterator[Session]:
        session = _MemberSession(self, engine, begin)
        try:
            try:
                yield session
                if session.group is not None:
                    session.commit()  # releases this scope's savepoint; the group's COMMIT comes later
            except BaseException as exc:
                if session.group is not None:
                    self._roll_back_member(session.group, session, exc)
                raise
            finally:
                quietly(session.close)
        except DBAPIError as exc:
            self._end_turn(session.group)
            raise translate_error(exc) from exc
        except BaseException:
            self._end_turn(session.group)
            raise
        group = session.group
        if group is None:
            return  # no statement was sent: nothing to commit
        self._end_turn(group)
        group.over.wait()
        if group.error is not None:
            raise copy.copy(group.error)  # each scope raises its own copy (one traceback each)

    def join(self, engine: Engine, begin: str) -> _Group:
        """This thread's turn, and the group its work goes into: the open one, or a new one."""
        deadline = time.monotonic() + engines.SQLITE_BUSY_TIMEOUT_S
        self._queue.threads.take(deadline)
        try:
            group = self._open
            if group is not None and group.engine is not engine:  # another Database on the same file
                self._close(group)
                group = None
            if group is None:
                group = self._open = self._begin(engine, begin, deadline)
            group.members += 1
            return group
        except BaseException:
            self._queue.threads.give()
            raise

    def close_open_group(self) -> None:
        """Commit the open group now (by the thread whose turn it is)."""
        if self._open is not None:
            self._close(self._open)

    def _begin(self, engine: Engine, begin: str, deadline: float) -> _Group:
        processes = self._queue.processes
        processes.acquire(deadline)
        try:
            connection = engine.connect()
            try:
                _driver_savepoints(connection.dialect)
                connection.exec_driver_sql(begin)
                if self._alone is None:
                    self._alone = _has_deferred_constraints(connection)
            except BaseException:
                quietly(connection.close)
                raise
        except BaseException:
            processes.release()
            raise
        return _Group(engine, connection)

    def _roll_back_member(self, group: _Group, session: Session, exc: BaseException) -> None:
        """Undo one scope's work (back to its savepoint). A transaction SQLite ended itself, or a
        savepoint that cannot be rolled back to, ends the group: nothing in it is written."""
        try:
            session.rollback()
            alive = group.in_transaction()
        except DBAPIError:
            alive = False
        if not alive and group.alive:
            group.alive = False
            group.error = _group_error(exc)

    def _end_turn(self, group: _Group | None) -> None:
        """Pass the turn on with the group still open while others wait and the group is young;
        otherwise COMMIT it first."""
        if group is None:
            return  # the scope never took a turn
        if not (group.alive and not self._alone and self._queue.threads.waiting()
                and group.members < MAX_MEMBERS and time.monotonic() - group.opened < MAX_GROUP_S):
            self._close(group)
        self._queue.threads.give()

    def _close(self, group: _Group) -> None:
        self._open = None
        committed = False
        try:
            if group.alive:
                group.connection.commit()
                committed = True
            else:
                quietly(group.connection.rollback)
        except IntegrityError as exc:  # a deferred constraint: whose write broke it is not known
            group.error = translate_error(exc) if group.members == 1 else DatabaseUnavailable(
                "a write committed together with this one broke a deferred constraint; nothing was "
                "written; try again")
            self._alone = True
            quietly(group.connection.rollback)
        except DBAPIError as exc:
            group.error = translate_error(exc)
            quietly(group.connection.rollback)
        finally:
            if not committed and group.error is None:  # interrupted before COMMIT said how it went
                group.error = DatabaseUnavailable("the write's group was not committed; nothing was written; "
                                                  "try again")
            quietly(group.connection.close)
            self._queue.processes.release()
            group.over.set()


def _group_error(cause: BaseException) -> Exception:
    """What the finished scopes of a group SQLite rolled back answer: the failing scope's own
    error when it says why the database cannot store anything (a full disk), else a 503."""
    translated = translate_error(cause) if isinstance(cause, DBAPIError) else cause
    if isinstance(translated, DatabaseUnavailable):
        return translated
    return DatabaseUnavailable("the database rolled back a group of writes this one was part of; "
                               "nothing of it was written; try again")


def _has_deferred_constraints(connection: Connection) -> bool:
    """Does any schema of the file (and of the files attached to it) hold a deferred foreign key?"""
    schemas = [row[1] for row in connection.exec_driver_sql("PRAGMA database_list")]
    return any(connection.exec_driver_sql(
        f'SELECT 1 FROM "{schema}".sqlite_master WHERE upper(sql) LIKE \'%INITIALLY DEFERRED%\' LIMIT 1').first()
        for schema in schemas)


def _driver_savepoints(dialect) -> None:
    """SAVEPOINT, RELEASE and ROLLBACK TO sent straight through the driver, as SQLAlchemy would send
    them but without building a statement and a result for each: every scope of a group sends two.
    Set once on the SQLite dialect of Tiddly's engines; a driver error is raised as SQLAlchemy's."""
    if getattr(dialect, "tiddly_driver_savepoints", False):
        return

    def send(connection: Connection, sql: str) -> None:
        raw = connection.connection
        try:
            raw.dbapi_connection.execute(sql).close()
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw.dbapi_connection, None)
            raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=lost, dialect=dialect) from exc

    dialect.do_savepoint = lambda connection, name: send(connection, f"SAVEPOINT {name}")
    dialect.do_release_savepoint = lambda connection, name: send(connection, f"RELEASE SAVEPOINT {name}")
    dialect.do_rollback_to_savepoint = lambda connection, name: send(connection, f"ROLLBACK TO SAVEPOINT {name}")
    dialect.tiddly_driver_savepoints = True
