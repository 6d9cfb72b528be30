"""The JSON query language -> a SQLAlchemy ``Select``. Pure: no Flask, no session.

Operators are declared once, as data, in ``OPERATORS``; the compiler, the error
messages and the docs all read that table.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sqlalchemy import Select, and_, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from tiddly import jsonio, storage  # noqa: F401 - database writes NULLS FIRST/LAST for MySQL and MariaDB
from tiddly.config import Config
from tiddly.errors import BadJson, BadQuery, BadValue, UnknownOperator
from tiddly.registry import ColumnSpec, TableSpec


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
QUERY_KEYS = ("where", "orderby", "select", "limit", "offset", "count")
# Read by pages.py, include.py and aggregate.py; parse_query accepts and ignores them.
PAGE_KEYS = ("after", "include", "group", "aggregate", "having", "distinct")
# A column name is bare (no spaces) or double-quoted, SQL style, with "" for a quote: "my col" desc.
_NAME = r'("(?:[^"]|"")+"|[^\s"()]+)'
_ORDER_TERM = re.compile(r'^\s*("(?:[^"]|"")+"|[^\s"]+)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?\s*$',
                         re.IGNORECASE)
_RELATED_TERM = re.compile(rf'^\s*{_NAME}\({_NAME}\)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?\s*$',
                           re.IGNORECASE)
# (relation, column) -> the related table's column and the SQL of its value for each row
Related = Callable[[str, str], tuple[ColumnSpec, ColumnElement]]


@dataclass(frozen=True)
class OrderTerm:
    column: ColumnSpec
    descending: bool = False
    nulls: str | None = None  # "first", "last" or None (the database's default)
    # A related row's column (``stores(name)``: embedding reads), as SQL: ``column`` is the related table's.
    related: ColumnElement | None = None

    @property
    def sql(self) -> ColumnElement:
        return self.column.column if self.related is None else self.related


@dataclass(frozen=True)
class Query:
    where: ColumnElement
    order: tuple[OrderTerm, ...]
    columns: tuple[ColumnSpec, ...]
    limit: int
    offset: int
    count: bool


def parse_query(spec: TableSpec, raw: Any, config: Config, related: Related | None = None) -> Query:
    """Check a query object (every name, operator and value) and return a ``Query``; with
    ``related`` (embedding reads), ``orderby`` may name a related row's column, ``rel(col)``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadQuery("the query must be a JSON object")
    unknown = [k for k in raw if k not in QUERY_KEYS + PAGE_KEYS]
    if unknown:
        raise BadQuery(f"unknown query key {unknown[0]!r}; known: {', '.join(QUERY_KEYS + PAGE_KEYS)}",
                       key=unknown[0])
    return Query(
        where=compile_where(spec, raw.get("where"), config),
        order=parse_orderby(spec, raw.get("orderby"), related),
        columns=parse_select(spec, raw.get("select")),
        limit=_non_negative_int(raw.get("limit", config.default_limit), "limit", config.max_limit),
        offset=_non_negative_int(raw.get("offset", 0), "offset", MAX_OFFSET),
        count=_boolean(raw.get("count", False), "count"),
    )


def build_select(spec: TableSpec, query: Query) -> Select:
    columns = [c.column for c in query.columns]
    return (select(*columns).where(query.where)
            .order_by(*order_clauses(query.order)).limit(query.limit).offset(query.offset))


def build_count(spec: TableSpec, query: Query) -> Select:
    return select(func.count()).select_from(spec.table).where(query.where)


# -- where ---------------------------------------------------------------------

def compile_where(spec: TableSpec, where: Any, config: Config, depth: int = 0) -> ColumnElement:
    if where is None:
        return true()
    if not isinstance(where, dict):
        raise BadQuery("'where' must be a JSON object")
    if depth > config.max_where_depth:
        raise BadQuery(f"'where' nests deeper than {config.max_where_depth} levels")
    clauses = []
    for key, value in where.items():
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise BadQuery(f"'{key}' takes a non-empty list of conditions")
            parts = [compile_where(spec, item, config, depth + 1) for item in value]
            clauses.append(and_(*parts) if key == "and" else or_(*parts))
        elif key == "not":
            if not isinstance(value, dict) or not value:
                raise BadQuery("'not' takes a non-empty object of conditions")
            clauses.append(not_(compile_where(spec, value, config, depth + 1)))
        else:
            clauses.append(_column_condition(spec.column(key), value, config))
    return and_(*clauses) if clauses else true()


def _column_condition(col: ColumnSpec, condition: Any, config: Config) -> ColumnElement:
    if not isinstance(condition, dict):
        if isinstance(condition, list):
            raise BadValue(f"column '{col.name}' compares to a list only through 'in' or 'nin'",
                           column=col.name)
        return _eq(col.column, _scalar(col, condition))
    if not condition:
        raise BadQuery(f"the condition on '{col.name}' has no operator")
    parts = []
    for name, value in condition.items():
        op = OPERATORS.get(name) if isinstance(name, str) else None
        if op is None:
            raise UnknownOperator(f"unknown operator {name!r} on '{col.name}'; known: {', '.join(OPERATORS)}",
                                  operator=str(name), column=col.name)
        parts.append(op.build(col.column, _operand(op, col, value, config)))
    return and_(*parts)


def _operand(op: Operator, col: ColumnSpec, value: Any, config: Config) -> Any:
    if op.accepts == "value":
        # Only eq and ne give null a meaning (IS NULL / IS NOT NULL); lt/gt/... null is a 400, not a 500.
        return _scalar(col, value, allow_null=op.name in ("eq", "ne"))
    if op.accepts == "list":
        if not isinstance(value, list):
            raise BadValue(f"'{op.name}' on '{col.name}' takes a list", column=col.name)
        if len(value) > config.max_in_length:
            raise BadQuery(f"'{op.name}' lists at most {config.max_in_length} values", column=col.name)
        return [_scalar(col, item, allow_null=False) for item in value]
    if op.accepts == "pair":
        if not isinstance(value, list) or len(value) != 2:
            raise BadValue(f"'between' on '{col.name}' takes a list of two values", column=col.name)
        return [_scalar(col, item, allow_null=False) for item in value]
    if op.accepts == "pattern":
        if col.kind != "string" or not isinstance(value, str):
            raise BadValue(f"'{op.name}' on '{col.name}' needs a text column and a string pattern",
                           column=col.name)
        return value
    if not (value is None or isinstance(value, bool)):
        raise BadValue(f"'is' on '{col.name}' takes null, true or false", column=col.name)
    if value is not None and col.kind != "boolean":
        raise BadValue(f"'is' on '{col.name}' takes null here: true and false need a boolean column",
                       column=col.name)
    return value


def _scalar(col: ColumnSpec, value: Any, allow_null: bool = True) -> Any:
    if value is None and allow_null:
        return None
    if isinstance(value, (dict, list)) or value is None:
        raise BadValue(f"column '{col.name}' compares to a single value here", column=col.name)
    return col.coerce(value)


# -- orderby, select, paging ---------------------------------------------------

def parse_orderby(spec: TableSpec, orderby: Any, related: Related | None = None) -> tuple[OrderTerm, ...]:
    if orderby is None or orderby == "":
        texts = []
    elif isinstance(orderby, str):
        texts = orderby.split(",")
    elif isinstance(orderby, list) and all(isinstance(t, str) for t in orderby):
        texts = [part for t in orderby for part in t.split(",")]
    else:
        raise BadQuery("'orderby' must be a string like \"email desc, name\" or a list of such strings")
    terms = [_order_term(spec, text, related) for text in texts]
    named = {t.column.name for t in terms if t.related is None}
    # The primary key ends every ordering, so pages never repeat or skip a row.
    terms += [OrderTerm(col) for col in spec.primary_key if col.name not in named]
    return tuple(terms)


def _order_term(spec: TableSpec, text: str, related: Related | None) -> OrderTerm:
    match = _RELATED_TERM.match(text) if related is not None else None
    if match:
        relation, name, direction, nulls = match.groups()
        col, value = related(_unquote(relation), _unquote(name))
        return OrderTerm(col, (direction or "asc").lower() == "desc", nulls.lower() if nulls else None, value)
    match = _ORDER_TERM.match(text)
    if not match:
        raise BadQuery(f"cannot read the ordering {text.strip()!r}; write \"column [asc|desc] [nulls first|last]\"")
    name, direction, nulls = match.groups()
    return OrderTerm(spec.column(_unquote(name)), (direction or "asc").lower() == "desc",
                     nulls.lower() if nulls else None)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def order_clauses(order: tuple[OrderTerm, ...]) -> list:
    clauses = []
    for term in order:
        col = term.sql
        ordered = col.desc() if term.descending else col.asc()
        if term.nulls and (term.column.nullable or term.related is not None):  # a NOT NULL column needs none
            # NULLS FIRST/LAST; `database` teaches MySQL/MariaDB to write it (no such syntax there).
            ordered = ordered.nulls_first() if term.nulls == "first" else ordered.nulls_last()
        clauses.append(ordered)
    return clauses


def parse_select(spec: TableSpec, selected: Any) -> tuple[ColumnSpec, ...]:
    return spec.readable if selected is None else parse_columns(spec, selected, "select")


def parse_columns(spec: TableSpec, names: Any, key: str) -> tuple[ColumnSpec, ...]:
    """A list of readable column names (or "a, b"), checked and without repeats."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    if not isinstance(names, list) or not names:
        raise BadQuery(f"'{key}' must be a non-empty list of column names")
    chosen = {}
    for name in names:
        col = spec.column(name)
        chosen[col.name] = col
    return tuple(chosen.values())


def _non_negative_int(value: Any, name: str, maximum: int | None = None) -> int:
    # The JSON parser reads an integer past 64 bits as a float: too large all the same.
    too_large = isinstance(value, float) and maximum is not None and value > maximum
    if not too_large and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise BadQuery(f"'{name}' must be a non-negative integer, got {json.dumps(value)[:40]}")
    if maximum is not None and value > maximum:
        raise BadQuery(f"'{name}' is at most {maximum}, got {value}")
    return value


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadQuery(f"'{name}' must be true or false")
    return value


# -- the same query from a URL -------------------------------------------------

def query_from_args(args: Mapping[str, str]) -> dict:
    """``?where=<json>&orderby=...&select=a,b&limit=..&offset=..&count=true`` -> a query object."""
    query: dict[str, Any] = {}
    for key, raw in args.items():
        if key not in QUERY_KEYS + PAGE_KEYS:
            raise BadQuery(f"unknown query parameter {key!r}; known: {', '.join(QUERY_KEYS + PAGE_KEYS)}", key=key)
        if key in ("where", "having", "aggregate"):
            try:
                # orjson caps nesting; json.loads would raise RecursionError (a 500) on "[[[[...".
                query[key] = jsonio.loads(raw)
            except BadJson:
                raise BadJson(f"the '{key}' parameter is not valid JSON") from None
        elif key in ("limit", "offset"):
            if not re.fullmatch(r"\d{1,50}", raw):  # beyond any bound, and int() of it stays cheap
                raise BadQuery(f"'{key}' must be a non-negative integer, got {raw[:40]!r}")
            query[key] = int(raw)
        elif key in ("count", "distinct"):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise BadQuery(f"'{key}' must be true or false")
            query[key] = raw.lower() in ("true", "1")
        else:
            query[key] = raw
    return query
