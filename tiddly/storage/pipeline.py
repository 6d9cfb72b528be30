"""PostgreSQL: a write scope's BEGIN travels with its first statement, in one round trip.

Connections rest in autocommit, so a write scope sends its own BEGIN (``engines.WRITE_BEGIN``).
Sent alone it costs a round trip of its own; instead the scope marks its connection
(``begin_with_first_statement``) and the first statement the connection executes goes out in a
psycopg pipeline behind the BEGIN: both messages and one Sync, one wait. When the pipeline ends
the statement's results are on its cursor as after a plain execute, and its error, if any, is
raised from it (the transaction is then aborted and the scope rolls it back). A scope that sends
no statement sends no BEGIN; ``forget_begin`` clears the mark before the connection goes back to
the pool. executemany (bulk inserts) sends the BEGIN first, on its own.
"""
from __future__ import annotations


def begin_with_first_statement(dbapi_connection, begin: str) -> None:
    dbapi_connection.tiddly_begin = begin  # the BEGIN the psycopg connection owes its next statement


def forget_begin(dbapi_connection) -> None:
    dbapi_connection.tiddly_begin = None


def send_begin_with_first_statement(dialect) -> None:
    """Teach the dialect's execute calls to send an owed BEGIN with the statement (once per dialect)."""
    if getattr(dialect, "tiddly_pipelined_begin", False):
        return
    execute, execute_no_params, executemany = dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany

    def do_execute(cursor, statement, parameters, context=None):
        begin = _owed_begin(cursor)
        if begin is None:
            return execute(cursor, statement, parameters, context)
        with cursor.connection.pipeline():
            cursor.connection.execute(begin)
            execute(cursor, statement, parameters, context)

    def do_execute_no_params(cursor, statement, context=None):
        begin = _owed_begin(cursor)
        if begin is None:
            return execute_no_params(cursor, statement, context)
        with cursor.connection.pipeline():
            cursor.connection.execute(begin)
            execute_no_params(cursor, statement, context)

    def do_executemany(cursor, statement, parameters, context=None):
        begin = _owed_begin(cursor)
        if begin is not None:
            cursor.connection.execute(begin)
        return executemany(cursor, statement, parameters, context)

    dialect.do_execute, dialect.do_execute_no_params, dialect.do_executemany = \
        do_execute, do_execute_no_params, do_executemany
    dialect.tiddly_pipelined_begin = True


def _owed_begin(cursor) -> str | None:
    connection = cursor.connection
    begin = getattr(connection, "tiddly_begin", None)
    if begin is not None:
        connection.tiddly_begin = None
    return begin
