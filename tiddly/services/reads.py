"""Running a read plan: one page of rows with their includes, its count, where the next page
starts; a read by primary key; the rows a write hands back by key; a whole export, streamed.

Grouped, aggregated and distinct reads are answered by ``aggregate.py``. Takes a Session,
never commits.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

from sqlalchemy.orm import Session

from tiddly.errors import BadQuery
from tiddly.registry import ColumnSpec
from tiddly.services import aggregate, crud, include
from tiddly.services.limits import Budget
from tiddly.services.plan import Explain, Read, ReadResult
from tiddly.services.query import (
    body_statement,
    build_count,
    build_select,
    estimate_statement,
)
from tiddly.storage.expressions import Explained

KEYS_PER_READ = 1000  # rows read back by primary key per statement: IN lists stay short
STREAM_ROWS = 2_000   # rows fetched per round trip when a read streams


def run(session: Session, read: Read, budget: Budget | None = None) -> ReadResult:
    """The read's rows; ``budget``: the related rows its includes may load in all (None: any)."""
    budget = budget or Budget(float("inf"))
    if read.aggregate is not None:
        return aggregate.run(session, read)
    if read.key is not None and read.columns == read.table.readable and not read.includes:
        row = crud.find_row(session, read.table, read.key)  # the statement by key, built once per table
        return ReadResult([row] if row is not None else [])
    if read.key is not None:
        read = replace(read, keys=(read.key,))
    if read.keys is not None:
        return ReadResult(_by_keys(session, read, budget))
    dialect_name = session.get_bind().dialect.name
    rows = _rows(session, read, dialect_name)
    result = ReadResult(_shape(session, read, rows, dialect_name, budget))
    if read.count:
        result.count = _count(session, read, dialect_name)
    if read.limit and len(rows) == read.limit and all(term.via is None and isinstance(term.column, ColumnSpec)
                                                      for term in read.order):
        result.last = tuple(rows[-1][term.column.name] for term in read.order)
    return result


def explain(session: Session, op: Explain, budget: Budget | None = None) -> Any:
    """The database's plan of the statement that would build the read's answer (PostgreSQL's
    EXPLAIN; ``Unsupported`` elsewhere): JSON, or text, one line a row."""
    if "verbose" in op.options and _hides_columns(op.read):
        # VERBOSE lists every column a scan reads, by name: hidden and write-only ones too
        raise BadQuery("a VERBOSE plan would name columns that are not shown; ask for one without it")
    dialect_name = session.get_bind().dialect.name
    plan = session.execute(Explained(body_statement(op.read, dialect_name), op.format, op.options)).scalars().all()
    return plan[0] if op.format == "json" else "\n".join(plan)


def _hides_columns(read: Read) -> bool:
    """Whether a table the read scans (its includes' and their junctions' too) has a column the
    caller is not shown (hidden or write-only)."""
    if any(not column.readable for column in read.table.columns.values()):
        return True
    for inc in read.includes:
        junction = inc.relation.junction
        if junction is not None and any(column.info.get("policy") in ("hidden", "write_only_hashed")
                                        for column in junction.table.columns):
            return True
        if _hides_columns(inc.read):
            return True
    return False


def _count(session: Session, read: Read, dialect_name: str) -> int:
    """The read's count: exact; with ``estimate``, PostgreSQL's planner's (``planned``), or exact
    unless the estimate passes the page (``estimated``). Other databases count exactly."""
    if read.estimate is not None and dialect_name == "postgresql":
        plan = session.execute(Explained(estimate_statement(read, dialect_name), "json", frozenset())).scalar_one()
        planned = int(plan[0]["Plan"]["Plan Rows"])
        if read.estimate == "planned" or (read.limit is not None and planned > read.limit):
            return planned
    return session.execute(build_count(read, dialect_name)).scalar_one()


def stream(session: Session, read: Read) -> Iterator[list[tuple]]:
    """The read's rows (its columns, in order) in batches, through a server-side cursor; the
    statement runs now, the batches are fetched as they are consumed."""
    stmt = build_select(read, session.get_bind().dialect.name)
    result = session.execute(stmt, execution_options={"stream_results": True, "yield_per": STREAM_ROWS})
    return ([tuple(row) for row in batch] for batch in result.partitions())


def _by_keys(session: Session, read: Read, budget: Budget) -> list[dict]:
    """The rows with ``read.keys`` (and its filter), in that order, read in chunks."""
    dialect_name = session.get_bind().dialect.name
    spec, data = read.table, []
    for start in range(0, len(read.keys), KEYS_PER_READ):
        chunk = list(read.keys[start:start + KEYS_PER_READ])
        chosen = replace(read, limit=None, offset=0, after=None)
        rows = {tuple(row[c.name] for c in spec.primary_key): row
                for row in _rows(session, chosen, dialect_name, spec.pk_in(chunk))}
        data += _shape(session, read, [rows[key] for key in chunk if key in rows], dialect_name, budget)
    return data


def _rows(session: Session, read: Read, dialect_name: str, *also) -> list[dict]:
    """The page's rows, with the order, join and key columns fetched even when not selected."""
    columns = {c.name: c for c in read.columns}
    for col in [t.column for t in read.order if t.via is None and isinstance(t.column, ColumnSpec)] \
            + include.parent_columns(read) \
            + list(read.table.primary_key if also else ()):
        columns.setdefault(col.name, col)
    stmt = build_select(read, dialect_name, tuple(columns.values()))
    if also:
        stmt = stmt.where(*also)
    result = session.execute(stmt)
    names = tuple(result.keys())
    return [dict(zip(names, row)) for row in result]  # a third of the cost of dict(RowMapping)


def _shape(session: Session, read: Read, rows: list[dict], dialect_name: str, budget: Budget) -> list[dict]:
    names = [c.name for c in read.columns]
    data = [{name: row[name] for name in names} for row in rows]
    for inc in read.includes:
        if not inc.loaded:
            continue
        for item, related in zip(data, include.load(session, inc, rows, dialect_name, budget)):
            item[inc.name] = related
    budget.check(data, read.includes)
    return data
