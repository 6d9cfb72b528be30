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

from tiddly.errors import BadQuery
from tiddly.registry import ColumnSpec
from tiddly.services import aggregate
from tiddly.services.limits import Budget
from tiddly.services.plan import Include, Read
from tiddly.services.query import build_select, order_clauses

_RANK = "tiddly_rank"
_LINK = "tiddly_link_"  # the parent's key of each related row, as fetched


def parent_columns(read: Read) -> list[ColumnSpec]:
    """The parent columns the loaded includes join on (fetched even when not selected)."""
    return [read.table.columns[local] for inc in read.includes if inc.loaded for local, _ in inc.relation.pairs]


def load(session: Session, inc: Include, parents: list[dict], dialect_name: str, budget: Budget) -> list:
    """For each parent row, in order: its list of related rows (one-to-many) or its row or None.
    No query reads more rows than ``budget`` lets the whole answer embed."""
    local_names = [local for local, _ in inc.relation.pairs]
    keys = [tuple(row[name] for name in local_names) for row in parents]
    wanted = {key for key in keys if None not in key}
    fetch = _fetch_groups if inc.read.aggregate is not None else _fetch
    found = fetch(session, inc, wanted, dialect_name, budget) if wanted else {}
    empty = aggregate.empty_group(inc.read.aggregate) if inc.read.aggregate is not None else None
    if inc.relation.many:
        return [found.get(key, [dict(empty)] if empty is not None else []) for key in keys]
    return [found.get(key, [dict(empty) if empty is not None else None])[0] for key in keys]


def _fetch_groups(session: Session, inc: Include, keys: set[tuple], dialect_name: str,
                  budget: Budget) -> dict[tuple, list[dict]]:
    """An aggregated include: its groups for every parent at once, grouped by the parent's key."""
    if inc.read.limit is not None or inc.read.offset:
        raise BadQuery(f"'{inc.name}' aggregates its rows: 'limit' and 'offset' do not apply to it")
    links = _links(inc)
    found = aggregate.related(session, inc.read, links, _matches(links, keys), _junction_join(inc))
    budget.fetched(sum(len(groups) for groups in found.values()))
    return found


def _matches(links: list, keys: set[tuple]):
    if len(links) == 1:
        return links[0].in_([key[0] for key in keys])
    return tuple_(*links).in_(list(keys))


def _junction_join(inc: Include):
    """How a many-to-many include's table joins its junction (None for any other include)."""
    junction = inc.relation.junction
    if junction is None:
        return None
    target = inc.read.table
    return lambda table: table.join(junction.table, and_(*(junction.table.c[middle] == target.columns[remote].column
                                                          for middle, remote in junction.target)))


def _fetch(session: Session, inc: Include, keys: set[tuple], dialect_name: str,
           budget: Budget) -> dict[tuple, list[dict]]:
    links = _links(inc)
    labelled = [link.label(f"{_LINK}{i}") for i, link in enumerate(links)]
    columns = {c.name: c for c in inc.read.columns + tuple(parent_columns(inc.read))}
    read = replace(inc.read, limit=None, offset=0)
    stmt = build_select(read, dialect_name, tuple(columns.values())).add_columns(*labelled) \
        .where(_matches(links, keys))
    junction = inc.relation.junction
    if junction is not None:
        target = inc.read.table
        stmt = stmt.join(junction.table, and_(*(junction.table.c[middle] == target.columns[remote].column
                                                for middle, remote in junction.target)))
    names = list(columns) + [label.name for label in labelled]
    if inc.read.limit is not None or inc.read.offset:
        stmt = _top_per_parent(stmt, inc, links, names)
    rows = [dict(row) for row in session.execute(_bounded(stmt, budget)).mappings()]
    budget.fetched(len(rows))
    shown = [child for child in inc.read.includes if child.loaded]
    for child in shown:
        for row, related in zip(rows, load(session, child, rows, dialect_name, budget)):
            row[child.name] = related
    names = [c.name for c in inc.read.columns] + [child.name for child in shown]
    found: dict[tuple, list[dict]] = {}
    for row in rows:
        found.setdefault(tuple(row[label.name] for label in labelled), []).append({name: row[name] for name in names})
    return found


def _links(inc: Include) -> list:
    """The columns whose values name each related row's parent: the related table's side of
    the foreign key, or the junction's side toward the parent (many-to-many)."""
    junction = inc.relation.junction
    if junction is not None:
        return [junction.table.c[middle] for _, middle in junction.source]
    return [inc.read.table.columns[remote].column for _, remote in inc.relation.pairs]


def _bounded(stmt, budget: Budget):
    """An include's query reads no more rows than the answer may embed, and one more to tell."""
    return stmt if budget.most == float("inf") else stmt.limit(int(budget.most) + 1)


def _top_per_parent(stmt, inc: Include, links, names: list[str]):
    rank = func.row_number().over(partition_by=list(links), order_by=order_clauses(inc.read)).label(_RANK)
    ranked = stmt.add_columns(rank).order_by(None).limit(None).offset(None).subquery()
    window = [ranked.c[_RANK] > inc.read.offset]
    if inc.read.limit is not None:
        window.append(ranked.c[_RANK] <= inc.read.offset + inc.read.limit)
    return select(*(ranked.c[name] for name in names)).where(and_(*window)).order_by(ranked.c[_RANK])
