"""PostgreSQL: what a scope owes the database travels with its first statement, in one round trip.

Connections rest in autocommit, so a write scope sends its own BEGIN (``engines.WRITE_BEGIN``).
Sent alone it costs a round trip of its own; instead the scope marks its connection
(``begin_with_first_statement``) and the first statement the connection executes goes out in a
psycopg pipeline behind the BEGIN: both messages and one Sync, one wait. When the pipeline ends
the statement's results are on its cursor as after a plain execute, and its error, if any, is
raised from it (the transaction is then aborted and the scope rolls it back). A scope that sends
no statement sends no BEGIN; ``forget_begin`` clears the mark before the connection goes back to
the pool. executemany (bulk inserts) sends the BEGIN first, on its own.

A read owed the same way (``read_with_first_statement``: the API key check of a caller the worker
already knows, ``OwedRead``) goes after the BEGIN and before the statement; its row is kept on the
``OwedRead`` for whoever must look at it before anything is answered or committed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class OwedRead:
    """One row to read: ``statement`` with its ``values``, and the ``sql`` and ``params`` the
    driver takes for them. ``done`` once read, with ``row`` the driver's tuple (None: no row)."""
    statement: Any
    values: dict
    sql: str
    params: Any
    row: tuple | None = None
    done: bool = False


def begin_with_first_statement(dbapi_connection, begin: str) -> None:
    dbapi_connection.tiddly_begin = begin  # the BEGIN the psycopg connection owes its next statement


def read_with_first_statement(dbapi_connection, owed: OwedRead) -> None:
    dbapi_connection.tiddly_read = owed


def forget_begin(dbapi_connection) -> None:
    dbapi_connection.tiddly_begin = None
    dbapi_connection.tiddly_read = None


def send_begin_with_first_statement(dialect) -> None:
    """Teach the dialect's execute calls to send an owed BEGIN with the statement (once per dialect)."""
    if getattr(dialect, "tiddly_pipelined_begin", False):
        return
    execute, execute_no_params, executemany = dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany

    def do_execute(cursor, statement, parameters, context=None):
        begin, owed = _owed(cursor)
        if begin is None and owed is None:
            return execute(cursor, statement, parameters, context)
        _pipelined(cursor.connection, begin, owed, lambda: execute(cursor, statement, parameters, context))

    def do_execute_no_params(cursor, statement, context=None):
        begin, owed = _owed(cursor)
        if begin is None and owed is None:
            return execute_no_params(cursor, statement, context)
        _pipelined(cursor.connection, begin, owed, lambda: execute_no_params(cursor, statement, context))

    def do_executemany(cursor, statement, parameters, context=None):
        begin, owed = _owed(cursor)
        if begin is not None or owed is not None:
            _pipelined(cursor.connection, begin, owed, lambda: None)
        return executemany(cursor, statement, parameters, context)

    dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany = \
        do_execute, do_execute_no_params, do_executemany
    dialect.tiddly_pipelined_begin = True


def _owed(cursor) -> tuple[str | None, OwedRead | None]:
    connection = cursor.connection
    begin, owed = getattr(connection, "tiddly_begin", None), getattr(connection, "tiddly_read", None)
    if begin is not None or owed is not None:
        connection.tiddly_begin = connection.tiddly_read = None
    return begin, owed


def _pipelined(connection, begin: str | None, owed: OwedRead | None, statement) -> None:
    """The owed BEGIN and read, then the statement: one Sync, one wait."""
    with connection.pipeline():
        if begin is not None:
            connection.execute(begin)
        owed_cursor = connection.execute(owed.sql, owed.params) if owed is not None else None
        statement()
    if owed_cursor is not None:
        owed.row, owed.done = owed_cursor.fetchone(), True
