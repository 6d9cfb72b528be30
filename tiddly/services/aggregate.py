"""Grouped, aggregated and distinct queries: ``group``, ``aggregate``, ``having``, ``distinct``.

The grouped (or distinct) SELECT becomes a subquery. ``having`` and ``orderby``
are then read against its output columns by the ordinary where compiler and
orderby parser, through a ``TableSpec`` over those columns: every name is still
checked, every value still typed, and ``having`` gets every where operator.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tiddly import storage
from tiddly.config import Config
from tiddly.errors import BadQuery
from tiddly.registry import ColumnSpec, Policy, TableSpec
from tiddly.services.query import (
    compile_where,
    order_clauses,
    parse_columns,
    parse_orderby,
    parse_query,
)

AGGREGATE_KEYS = ("group", "aggregate", "having", "distinct")
NUMERIC = ("integer", "number", "decimal")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LABEL = "tiddly_agg_{}"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# name -> (needs a column, numeric columns only, result kind or None for "the column's kind")
FUNCTIONS = {
    "count": (False, False, "integer"),
    "count_distinct": (True, False, "integer"),
    "sum": (True, True, None),
    "avg": (True, True, "number"),
    "min": (True, False, None),
    "max": (True, False, None),
}


def requested(raw: dict) -> bool:
    return any(raw.get(key) not in (None, False) for key in AGGREGATE_KEYS)


def fetch(session: Session, spec: TableSpec, raw: dict, config: Config) -> dict:
    for key in ("after", "include"):
        if raw.get(key) is not None:
            raise BadQuery(f"'{key}' does not apply to grouped or distinct queries")
    query = parse_query(spec, {k: v for k, v in raw.items() if k not in ("orderby", "group", "aggregate",
                                                                         "having", "distinct")}, config)
    view, exact = _grouped_view(spec, raw, query, session.get_bind().dialect.name)
    having = compile_where(view, raw.get("having"), config)
    order = parse_orderby(view, raw.get("orderby"))
    outputs = [c.column for c in view.columns.values()]
    parts = [part for pair in exact.values() for part in pair]
    stmt = (select(*outputs, *parts).where(having).order_by(*order_clauses(order))
            .limit(query.limit).offset(query.offset))
    data = [_output_row(view, exact, row._mapping) for row in session.execute(stmt)]
    result: dict[str, Any] = {"data": data}
    if query.count:
        counted = select(*outputs).where(having).subquery()
        result["count"] = session.execute(select(func.count()).select_from(counted)).scalar_one()
    return result


def _output_row(view: TableSpec, exact: dict, row) -> dict:
    values = {name: row[c.column] for name, c in view.columns.items()}
    values.update({alias: storage.add_sum_parts(row[high], row[low]) for alias, (high, low) in exact.items()})
    return {name: _plain(c.kind, values[name]) for name, c in view.columns.items()}


def _grouped_view(spec: TableSpec, raw: dict, query, dialect_name: str) -> tuple[TableSpec, dict]:
    """The grouped subquery as a table, and the exact sums' parts among its columns (alias -> (high, low))."""
    distinct = raw.get("distinct", False)
    if not isinstance(distinct, bool):
        raise BadQuery("'distinct' must be true or false")
    group = _group(spec, raw.get("group"))
    aggregates = _aggregates(spec, raw.get("aggregate"), group, dialect_name)
    if distinct and (group or aggregates):
        raise BadQuery("'distinct' selects unique rows; a grouped query's rows are already unique")
    if not distinct and "select" in raw:
        raise BadQuery("a grouped query returns its group columns and aggregates: leave out 'select'")
    if raw.get("having") is not None and distinct:
        raise BadQuery("'having' filters groups: use 'where' with 'distinct'")
    keys = list(query.columns) if distinct else group
    labelled = [expr.label(_LABEL.format(i)) for i, (_alias, expr, _kind, _parts) in enumerate(aggregates)]
    labelled += [part.label(f"{_LABEL.format(i)}_{j}") for i, (*_, parts) in enumerate(aggregates)
                 for j, part in enumerate(parts)]
    inner = select(*(c.column for c in keys), *labelled).where(query.where)
    inner = (inner.distinct() if distinct else inner.group_by(*(c.column for c in group))).subquery()
    columns = {c.name: replace(c, column=inner.c[c.name]) for c in keys}
    for i, (alias, _expr, kind, _parts) in enumerate(aggregates):
        columns[alias] = ColumnSpec(name=alias, column=inner.c[_LABEL.format(i)], policy=Policy.NORMAL,
                                    kind=kind, nullable=True, required=False, int_bits=64)
    exact = {alias: (inner.c[f"{_LABEL.format(i)}_0"], inner.c[f"{_LABEL.format(i)}_1"])
             for i, (alias, *_, parts) in enumerate(aggregates) if parts}
    view = TableSpec(name=spec.name, table=spec.table, columns=columns,
                     primary_key=tuple(columns[c.name] for c in keys))
    return view, exact


def _group(spec: TableSpec, raw: Any) -> list[ColumnSpec]:
    return [] if raw is None else list(parse_columns(spec, raw, "group"))


def _aggregates(spec: TableSpec, raw: Any, group: list[ColumnSpec],
                dialect_name: str) -> list[tuple[str, Any, str, tuple]]:
    """``{"n": "count", "avg_year": "avg:year"}`` -> [(alias, SQL expression, result kind, exact parts)]."""
    if raw is None:
        return []
    if not isinstance(raw, dict) or not raw:
        raise BadQuery("'aggregate' must be an object of name -> \"count\" or \"function:column\"")
    taken = {c.name for c in group}
    result = []
    for alias, text in raw.items():
        if not _ALIAS.match(alias) or alias in taken:
            raise BadQuery(f"aggregate name {alias[:40]!r} must be a new identifier (letters, digits, _)")
        result.append((alias, *_aggregate(spec, alias, text, dialect_name)))
    return result


def _aggregate(spec: TableSpec, alias: str, text: Any, dialect_name: str) -> tuple[Any, str, tuple]:
    name, _, column = text.partition(":") if isinstance(text, str) else ("", "", "")
    if name not in FUNCTIONS:
        raise BadQuery(f"aggregate '{alias}' must be \"count\" or \"function:column\" with function one of "
                       f"{', '.join(FUNCTIONS)}")
    needs_column, numeric, kind = FUNCTIONS[name]
    if not column:
        if needs_column:
            raise BadQuery(f"aggregate '{alias}': {name} needs a column, e.g. \"{name}:year\"")
        return func.count(), "integer", ()
    col = spec.column(column)
    if numeric and col.kind not in NUMERIC:
        raise BadQuery(f"aggregate '{alias}': {name} needs a numeric column, '{col.name}' is {col.kind}")
    if name == "sum" and col.kind == "integer":
        total, parts = storage.integer_sum(dialect_name, col.column)
        return total, "integer", parts
    expr = {"count": lambda c: func.count(c), "count_distinct": lambda c: func.count(c.distinct()),
            "sum": func.sum, "avg": func.avg, "min": func.min, "max": func.max}[name](col.column)
    return expr, kind or col.kind, ()


def _plain(kind: str, value: Any) -> Any:
    """The same JSON on every database: MariaDB and PostgreSQL return DECIMAL for sums and averages."""
    if value is None:
        return None
    if kind == "integer":
        # orjson writes integers up to 64 bits; a sum beyond them is a decimal string, exact.
        value = int(value)
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if kind == "number":
        return float(value)
    return value
