"""A read plan -> SQLAlchemy: its conditions, its order, the page's SELECT and COUNT. Pure: no
Flask, no session.

Operators are declared once, as data, in ``OPERATORS``: this compiler, the JSON language's
parser and its error messages (web/api), the OpenAPI document and docs/API.md all read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import Select, and_, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from tiddly import storage  # noqa: F401 - storage writes NULLS FIRST/LAST for MySQL and MariaDB
from tiddly.registry import ColumnSpec
from tiddly.services import cursor
from tiddly.services.plan import AllOf, Compare, Condition, Not, OrderTerm, Read


@dataclass(frozen=True)
class Operator:
    name: str
    accepts: str  # "value", "list", "pair", "pattern", "is"
    build: Callable[[Any, Any], ColumnElement]
    doc: str


def _eq(col, value):
    return col.is_(None) if value is None else col == value


def _ne(col, value):
    return col.is_not(None) if value is None else col != value


OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Operator("eq", "value", _eq, "equal to (`null`: IS NULL)"),
    Operator("ne", "value", _ne, "not equal to (`null`: IS NOT NULL); rows whose value is NULL never match"),
    Operator("lt", "value", lambda c, v: c < v, "less than"),
    Operator("lte", "value", lambda c, v: c <= v, "less than or equal to"),
    Operator("gt", "value", lambda c, v: c > v, "greater than"),
    Operator("gte", "value", lambda c, v: c >= v, "greater than or equal to"),
    Operator("in", "list", lambda c, v: c.in_(v), "equal to one of a list"),
    Operator("nin", "list", lambda c, v: c.not_in(v), "equal to none of a list"),
    Operator("like", "pattern", lambda c, v: c.like(v), "matches a SQL LIKE pattern (`%`, `_`), case-sensitive"),
    Operator("ilike", "pattern", lambda c, v: c.ilike(v), "matches a SQL LIKE pattern, case-insensitive"),
    Operator("between", "pair", lambda c, v: c.between(v[0], v[1]), "between two values, inclusive: `[low, high]`"),
    Operator("is", "is", lambda c, v: c.is_(v), "IS `null`, `true` or `false`"),
)}

# The largest OFFSET every database takes (a signed 64-bit integer): checked before any SQL runs.
MAX_OFFSET = 2**63 - 1

# How a column of the plan becomes SQL: its table's column, or (a grouped read) the subquery's.
Columns = Callable[[ColumnSpec], ColumnElement]


def _own(col: ColumnSpec) -> ColumnElement:
    return col.column


def where_clause(condition: Condition | None, columns: Columns = _own) -> ColumnElement:
    if condition is None:
        return true()
    if isinstance(condition, Compare):
        return OPERATORS[condition.op].build(columns(condition.column), condition.value)
    if isinstance(condition, Not):
        return not_(where_clause(condition.item, columns))
    parts = [where_clause(item, columns) for item in condition.items]
    if not parts:
        return true()
    return and_(*parts) if isinstance(condition, AllOf) else or_(*parts)


def order_clauses(read: Read, columns: Columns = _own) -> list:
    clauses = []
    for term in read.order:
        col = related_value(read, term) if term.via is not None else columns(term.column)
        ordered = col.desc() if term.descending else col.asc()
        if term.nulls and (term.column.nullable or term.via is not None):  # a NOT NULL column needs none
            # NULLS FIRST/LAST; `storage` teaches MySQL/MariaDB to write it (no such syntax there).
            ordered = ordered.nulls_first() if term.nulls == "first" else ordered.nulls_last()
        clauses.append(ordered)
    return clauses


def related_value(read: Read, term: OrderTerm) -> ColumnElement:
    """The value ``term`` orders by when it names a to-one include's column: the related row's,
    or NULL when the include's where leaves none (a correlated subquery)."""
    inc = next(inc for inc in read.includes if inc.name == term.via)
    joined = [inc.read.table.columns[remote].column == read.table.columns[local].column
              for local, remote in inc.relation.pairs]
    return (select(term.column.column).where(*joined, where_clause(inc.read.where))
            .correlate(read.table.table).scalar_subquery())


def exists_clauses(read: Read) -> list:
    """The parents' conditions for includes with ``exists``: a correlated EXISTS (or NOT EXISTS)
    on the related table, with the include's where and its own children's conditions."""
    clauses = []
    for inc in read.includes:
        if inc.exists is None:
            continue
        joined = [inc.read.table.columns[remote].column == read.table.columns[local].column
                  for local, remote in inc.relation.pairs]
        # Correlated with the parent alone: a table met again further down is its own FROM there.
        found = select(1).where(*joined, where_clause(inc.read.where), *exists_clauses(inc.read)) \
            .correlate(read.table.table).exists()
        clauses.append(found if inc.exists else not_(found))
    return clauses


def filter_clause(read: Read, dialect_name: str, keyset: bool = True) -> ColumnElement:
    """Everything that chooses the rows: the where, the includes' exists, the keyset cursor."""
    parts = [where_clause(read.where), *exists_clauses(read)]
    if read.after is not None and keyset:
        parts.append(cursor.after_clause(read.order, read.after, dialect_name))
    return and_(*parts)


def build_select(read: Read, dialect_name: str, columns: tuple[ColumnSpec, ...] | None = None) -> Select:
    """The page's SELECT: ``columns`` (default: the read's) of the rows it chooses, in its order."""
    chosen = read.columns if columns is None else columns
    return (select(*(c.column for c in chosen)).where(filter_clause(read, dialect_name))
            .order_by(*order_clauses(read)).limit(read.limit).offset(read.offset or None))


def build_count(read: Read, dialect_name: str) -> Select:
    """How many rows the read's filter matches, whatever its page (and its cursor)."""
    return select(func.count()).select_from(read.table.table).where(filter_clause(read, dialect_name, keyset=False))
