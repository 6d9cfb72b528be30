"""Driver errors -> Tiddly's typed errors, for every database, in one table."""
from __future__ import annotations

import re

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
)

from tiddly.errors import (
    ApiError,
    BadValue,
    Conflict,
    DatabaseUnavailable,
    ForeignKeyViolation,
    StatementTimeout,
    UniqueViolation,
)


class Deadlock(DatabaseUnavailable):
    """The database undid the transaction to break a deadlock (or a serialization failure): the
    same work, run again, will most likely succeed. ``execute`` retries a write that may."""


# PostgreSQL deadlock_detected, serialization_failure; MySQL/MariaDB ER_LOCK_DEADLOCK
_DEADLOCK_SQLSTATES = ("40P01", "40001")
_MYSQL_DEADLOCK = 1213


def _is_deadlock(orig) -> bool:
    return getattr(orig, "sqlstate", None) in _DEADLOCK_SQLSTATES or mysql_errno(orig) == _MYSQL_DEADLOCK


def quietly(end) -> None:
    """Roll back or close after a failure: a lost connection has no transaction left to end
    (the pool drops it), and the request's own error is the one to answer."""
    try:
        end()
    except DBAPIError:
        pass


def translate_error(exc: DBAPIError) -> Exception:
    """Map a driver error to a typed API error; anything unforeseen stays as it is (a 500)."""
    if isinstance(exc, IntegrityError) or mysql_errno(exc.orig) in _MYSQL_CHECK_VIOLATIONS:
        return _integrity_error(exc)
    if isinstance(exc, DataError):
        return BadValue("a value does not fit its column in the database")
    refused = _refused_operand(exc.orig)
    if refused is not None:
        return BadValue(refused)
    if _is_statement_timeout(exc.orig):
        return StatementTimeout("the query ran longer than the statement timeout and was cancelled; "
                                "narrow it (a where, a smaller limit) or try again")
    if getattr(exc.orig, "sqlstate", None) == "2200H" or mysql_errno(exc.orig) == 1467:
        return Conflict("the table's generated keys are used up: its sequence or AUTO_INCREMENT is at the end "
                        "of its type", constraint="key_generator")
    if _is_deadlock(exc.orig):
        return Deadlock("the database undid this write to break a deadlock with another; try again")
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
    errno = mysql_errno(orig)  # PyMySQL: (errno, message); its sqlstate is often a generic HY000
    if errno is not None:
        return _MYSQL_CAUSES.get(errno)
    return _POSTGRESQL_CAUSES.get(getattr(orig, "sqlstate", None))


# PostgreSQL's: a server shutting down or starting up, or no connection (08xxx)
_UNREACHABLE_SQLSTATES = ("57P01", "57P02", "57P03")


def unreachable(exc: DBAPIError) -> bool:
    """Is the error that the database server cannot be reached (down, restarting, gone), rather
    than anything about the request? psycopg's own connection failures carry no SQLSTATE."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES


# An operand the database refuses (each database raises it its own way): a regular expression that
# does not compile, a text search query or configuration PostgreSQL cannot read.
_POSTGRESQL_OPERANDS = {"42704": "no such text search configuration", "42601": "a text search query that "
                        "does not parse"}
_MYSQL_REGEXP_ERROR = 1139
_MYSQL_JSON_PATH_ERRORS = (4042, 4043, 3143)  # MariaDB's JSON path syntax errors, MySQL's


def _refused_operand(orig) -> str | None:
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _POSTGRESQL_OPERANDS and ("tsquery" in str(orig) or "text search" in str(orig)):
        return f"the database cannot read the filter's value: {_POSTGRESQL_OPERANDS[sqlstate]}"
    if mysql_errno(orig) == _MYSQL_REGEXP_ERROR or "user-defined function raised exception" in str(orig):
        return "the database cannot read the filter's value: a regular expression that does not compile"
    if mysql_errno(orig) in _MYSQL_JSON_PATH_ERRORS or str(orig).startswith("bad JSON path"):
        return "the database cannot read the JSON path (a key with a quote, say)"
    return None


# PyMySQL raises a CHECK violation as an OperationalError; it is a 409 like any constraint.
_MYSQL_CHECK_VIOLATIONS = (3819, 4025)  # MySQL, MariaDB


def mysql_errno(orig) -> int | None:
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
        error = UniqueViolation("a row with the same unique value already exists")
        error.clash = unique_clash(exc.orig)
        return error
    if kind == "foreign_key":
        return ForeignKeyViolation("the change references a missing row, or a row that others still reference")
    if kind == "not_null":
        return Conflict("a required column was left empty", constraint="not_null")
    return Conflict("the change violates a database constraint")


_PG_KEY = re.compile(r"Key \((.+)\)=\((.*)\) already exists\.", re.DOTALL)
_MYSQL_DUPLICATE = re.compile(r"Duplicate entry '(.*)' for key '(.+)'", re.DOTALL)
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


def unique_clash(orig) -> dict:
    """What the database says of a unique violation, as far as it says: the constraint's name,
    the key's columns (and table), their values as text. Kept apart from the error's details:
    the columns may be ones the caller may not see, which whoever shows it must check."""
    clash: dict = {}
    diag = getattr(orig, "diag", None)  # psycopg
    if diag is not None:
        clash["constraint"] = diag.constraint_name
        clash["table"] = diag.table_name
        found = _PG_KEY.fullmatch(diag.message_detail or "")
        if found:
            clash["columns"] = [name.strip().strip('"') for name in found.group(1).split(",")]
            clash["values"] = found.group(2)
        return clash
    message = str(getattr(orig, "args", ("", ""))[-1] if mysql_errno(orig) else orig)
    found = _MYSQL_DUPLICATE.search(message)
    if found:
        clash["values"] = found.group(1)
        clash["constraint"] = found.group(2).split(".")[-1]  # MySQL 8 writes table.key
        return clash
    found = _SQLITE_UNIQUE.search(message)
    if found:
        names = [item.strip().split(".", 1) for item in found.group(1).split(",")]
        clash["table"] = names[0][0] if len(names[0]) == 2 else None
        clash["columns"] = [parts[-1] for parts in names]
    return clash


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
