"""Related rows for a page (a read's ``includes``): one query per relation and level, whatever
the page size.

One-to-many gives a list per parent (its ``limit`` and ``offset`` per parent: ROW_NUMBER()
OVER (PARTITION BY the foreign key)); many-to-one gives one object or None. Takes a Session,
never commits.
"""
from __future__ import annotations

from dataclasses import replace

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.orm import Session

from tiddly.registry import ColumnSpec, TableSpec
from tiddly.services.limits import Budget
from tiddly.services.plan import Include, Read
from tiddly.services.query import build_select, order_clauses

_RANK = "tiddly_rank"


def parent_columns(read: Read) -> list[ColumnSpec]:
    """The parent columns the loaded includes join on (fetched even when not selected)."""
    return [read.table.columns[local] for inc in read.includes if inc.loaded for local, _ in inc.relation.pairs]


def load(session: Session, inc: Include, parents: list[dict], dialect_name: str, budget: Budget) -> list:
    """For each parent row, in order: its list of related rows (one-to-many) or its row or None.
    No query reads more rows than ``budget`` lets the whole answer embed."""
    local_names = [local for local, _ in inc.relation.pairs]
    keys = [tuple(row[name] for name in local_names) for row in parents]
    wanted = {key for key in keys if None not in key}
    found = _fetch(session, inc, wanted, dialect_name, budget) if wanted else {}
    if inc.relation.many:
        return [found.get(key, []) for key in keys]
    return [found.get(key, [None])[0] for key in keys]


def _fetch(session: Session, inc: Include, keys: set[tuple], dialect_name: str,
           budget: Budget) -> dict[tuple, list[dict]]:
    target: TableSpec = inc.read.table
    remotes = [target.columns[remote] for _, remote in inc.relation.pairs]
    columns = {c.name: c for c in inc.read.columns + tuple(remotes) + tuple(parent_columns(inc.read))}
    if len(remotes) == 1:
        matches = remotes[0].column.in_([key[0] for key in keys])
    else:
        matches = tuple_(*(c.column for c in remotes)).in_(list(keys))
    read = replace(inc.read, limit=None, offset=0)
    stmt = build_select(read, dialect_name, tuple(columns.values())).where(matches)
    if inc.read.limit is not None or inc.read.offset:
        stmt = _top_per_parent(stmt, inc, remotes, columns.values())
    rows = [dict(row) for row in session.execute(_bounded(stmt, budget)).mappings()]
    budget.fetched(len(rows))
    shown = [child for child in inc.read.includes if child.loaded]
    for child in shown:
        for row, related in zip(rows, load(session, child, rows, dialect_name, budget)):
            row[child.name] = related
    names = [c.name for c in inc.read.columns] + [child.name for child in shown]
    found: dict[tuple, list[dict]] = {}
    for row in rows:
        found.setdefault(tuple(row[c.name] for c in remotes), []).append({name: row[name] for name in names})
    return found


def _bounded(stmt, budget: Budget):
    """An include's query reads no more rows than the answer may embed, and one more to tell."""
    return stmt if budget.most == float("inf") else stmt.limit(int(budget.most) + 1)


def _top_per_parent(stmt, inc: Include, remotes: list[ColumnSpec], columns):
    rank = func.row_number().over(partition_by=[c.column for c in remotes],
                                  order_by=order_clauses(inc.read)).label(_RANK)
    ranked = stmt.add_columns(rank).order_by(None).limit(None).offset(None).subquery()
    window = [ranked.c[_RANK] > inc.read.offset]
    if inc.read.limit is not None:
        window.append(ranked.c[_RANK] <= inc.read.offset + inc.read.limit)
    return select(*(ranked.c[c.name] for c in columns)).where(and_(*window)).order_by(ranked.c[_RANK])
