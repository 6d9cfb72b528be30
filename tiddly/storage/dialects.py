"""What each database writes differently: upserts, exact integer sums, sequences, NULLS FIRST/LAST."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Table, case, column, func, literal, literal_column, null, text
from sqlalchemy import table as literal_table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression


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


def insertion_order(dialect_name: str, table) -> list:
    """What orders a read that asks for no order as the database keeps its rows: SQLite's rowid
    (the order of insertion; a table without one, and a view, have none), MariaDB's primary key
    (InnoDB keeps a table in it). Without it either reads a table through whichever index covers
    the columns asked for, in that index's order. PostgreSQL reads its heap as it lies, with no
    ORDER BY, as PostgREST's reads do."""
    if dialect_name == "postgresql" or not isinstance(table, Table) or table.info.get("view"):
        return []
    if dialect_name in ("mysql", "mariadb"):
        return list(table.primary_key.columns)
    if not table.dialect_options["sqlite"].get("with_rowid", True):
        return []
    return [literal_table(table.name, column("rowid"), schema=table.schema).c.rowid]


def column_default(dialect_name: str, column):
    """What writes a column's default inside an INSERT's values: a model's constant default;
    else ``DEFAULT`` (PostgreSQL, MariaDB), or on SQLite, which has no such keyword there, the
    default's own expression, or NULL."""
    if column.default is not None and getattr(column.default, "is_scalar", False):
        return literal(column.default.arg, column.type)
    if dialect_name != "sqlite":
        return literal_column("DEFAULT")
    default = column.server_default
    arg = getattr(default, "arg", None)
    if arg is None:
        return null()
    return text(arg) if isinstance(arg, str) else arg
