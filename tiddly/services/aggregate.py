"""Grouped, aggregated and distinct reads: a read whose ``aggregate`` is set.

The grouped (or distinct) SELECT becomes a subquery whose columns are the aggregate's
``outputs``; the read's ``having`` and ``order`` name those outputs, and are compiled by the
ordinary condition and order compilers against the subquery's columns.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import and_, cast, column, func, select
from sqlalchemy.orm import Session

from tiddly import storage
from tiddly.registry import ColumnSpec, Policy
from tiddly.services.plan import Aggregate, Read, ReadResult
from tiddly.services.query import (
    CASTS,
    filter_clause,
    order_clauses,
    selected,
    value_of,
    where_clause,
)

NUMERIC = ("integer", "number", "decimal")
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
_SQL = {"count": func.count, "count_distinct": lambda c: func.count(c.distinct()), "sum": func.sum,
        "avg": func.avg, "min": func.min, "max": func.max}


def output_spec(alias: str, kind: str) -> ColumnSpec:
    """The spec of an aggregate's output column, which ``having`` and ``orderby`` name."""
    return ColumnSpec(name=alias, column=column(alias), policy=Policy.NORMAL, kind=kind, nullable=True,
                      required=False, int_bits=64)


def result_kind(name: str, col: ColumnSpec | None, cast: str | None = None) -> str:
    if cast is not None:
        return CASTS[cast][1]
    kind = FUNCTIONS[name][2]
    return kind or (col.kind if col is not None else "integer")


def run(session: Session, read: Read) -> ReadResult:
    dialect_name = session.get_bind().dialect.name
    inner, exact = _grouped(read, dialect_name)
    columns = _columns(read.aggregate, inner)
    outputs = [columns(spec) for spec in read.aggregate.outputs.values()]
    parts = [part for pair in exact.values() for part in pair]
    stmt = (select(*outputs, *parts).where(where_clause(read.aggregate.having, columns))
            .order_by(*order_clauses(read, columns)).limit(read.limit).offset(read.offset or None))
    rows = [_output_row(read.aggregate, outputs, exact, row._mapping) for row in session.execute(stmt)]
    count = None
    if read.count:
        counted = select(*outputs).where(where_clause(read.aggregate.having, columns)).subquery()
        count = session.execute(select(func.count()).select_from(counted)).scalar_one()
    return ReadResult(rows, count)


def related(session: Session, read: Read, links: list, matches, join=None) -> dict[tuple, list[dict]]:
    """The groups of a read embedded under many parents at once (an include's read): the rows
    ``matches`` chooses, grouped by ``links`` as well, whose values name each group's parent;
    ``join`` joins what ``links`` come from (a many-to-many junction). By the parent's key."""
    dialect_name = session.get_bind().dialect.name
    labelled = [link.label(f"tiddly_link_{i}") for i, link in enumerate(links)]
    inner, exact = _grouped(read, dialect_name, labelled, matches, join)
    columns = _columns(read.aggregate, inner)
    outputs = [columns(spec) for spec in read.aggregate.outputs.values()]
    parts = [part for pair in exact.values() for part in pair]
    named = [inner.c[label.name] for label in labelled]
    stmt = (select(*outputs, *parts, *named).where(where_clause(read.aggregate.having, columns))
            .order_by(*order_clauses(read, columns)))
    found: dict[tuple, list[dict]] = {}
    for row in session.execute(stmt):
        mapping = row._mapping
        found.setdefault(tuple(mapping[c] for c in named), []).append(
            _output_row(read.aggregate, outputs, exact, mapping))
    return found


def empty_group(aggregate: Aggregate) -> dict | None:
    """What an aggregate without group columns answers for no rows at all (a count of 0, no
    sum), as SQL's aggregates do; None when it has group columns (no rows, no groups)."""
    if aggregate.group or aggregate.distinct:
        return None
    return {fn.alias: 0 if fn.name in ("count", "count_distinct") else None for fn in aggregate.functions}


def _grouped(read: Read, dialect_name: str, links: list = (), matches=None, join=None):
    """The grouped (or distinct) subquery, and the exact sums' parts among its columns."""
    aggregate = read.aggregate
    keys = list(read.columns) if aggregate.distinct else list(aggregate.group)
    labelled, exact_labels = [], {}
    for fn in aggregate.functions:
        expr, parts = _function(fn, dialect_name)
        labelled.append(expr.label(_label(fn.alias)))
        if parts:
            exact_labels[fn.alias] = [part.label(f"{_label(fn.alias)}__part{j}") for j, part in enumerate(parts)]
            labelled += exact_labels[fn.alias]
    source = _joined(read.table.table, read.table.table, aggregate.joins)
    source = source if join is None else join(source)
    inner = select(*(selected(c) for c in keys), *labelled, *links).select_from(source) \
        .where(filter_clause(read, dialect_name))
    if matches is not None:
        inner = inner.where(matches)
    grouping = [value_of(c) for c in aggregate.group] + [link.element for link in links]
    inner = (inner.distinct() if aggregate.distinct else inner.group_by(*grouping))
    inner = inner.subquery()
    exact = {alias: tuple(inner.c[part.name] for part in parts) for alias, parts in exact_labels.items()}
    return inner, exact


def _joined(source, parent, joins) -> Any:
    """``source`` left-joined to each to-one include of ``joins`` (and theirs), on its foreign
    key with ``parent`` and its where: a parent without a matching row keeps its row, with nulls."""
    for inc in joins:
        target = inc.read.table.table
        on = [target.c[remote] == parent.c[local] for local, remote in inc.relation.pairs]
        source = _joined(source.outerjoin(target, and_(*on, where_clause(inc.read.where))), target, inc.read.includes)
    return source


def _label(alias: str) -> str:
    return f"tiddly_agg_{alias}"


def _columns(aggregate: Aggregate, inner):
    functions = {fn.alias for fn in aggregate.functions}

    def column(spec: ColumnSpec):
        return inner.c[_label(spec.name) if spec.name in functions else spec.name]
    return column


def _function(fn, dialect_name: str) -> tuple[Any, tuple]:
    if fn.cast is not None:
        return cast(_function(replace(fn, cast=None), dialect_name)[0], CASTS[fn.cast][0]), ()
    if fn.column is None:
        return func.count(), ()
    if fn.name == "sum" and fn.column.kind == "integer":
        return storage.integer_sum(dialect_name, fn.column.column)
    return _SQL[fn.name](fn.column.column), ()


def _output_row(aggregate: Aggregate, outputs: list, exact: dict, row) -> dict:
    values = {name: row[column] for name, column in zip(aggregate.outputs, outputs)}
    values.update({alias: storage.add_sum_parts(row[high], row[low]) for alias, (high, low) in exact.items()})
    return {name: _plain(spec.kind, values[name]) for name, spec in aggregate.outputs.items()}


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
