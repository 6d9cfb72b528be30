"""Running a read plan: one page of rows with their includes, its count, where the next page
starts; a read by primary key; the rows a write hands back by key; a whole export, streamed.

Grouped, aggregated and distinct reads are answered by ``aggregate.py``. Takes a Session,
never commits.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from sqlalchemy.orm import Session

from tiddly.services import aggregate, crud, include
from tiddly.services.limits import Budget
from tiddly.services.plan import Read, ReadResult
from tiddly.services.query import build_count, build_select

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
        result.count = session.execute(build_count(read, dialect_name)).scalar_one()
    if read.limit and len(rows) == read.limit and not any(term.via for term in read.order):
        result.last = tuple(rows[-1][term.column.name] for term in read.order)
    return result


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
    for col in [t.column for t in read.order if t.via is None] + include.parent_columns(read) \
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
