"""Related rows for a page (``"include"``): one query per relationship, whatever the page size.

``"include": ["items"]`` or ``{"items": {"where": ..., "orderby": ..., "select": ..., "limit": 5}}``
follows a relationship declared on the table's mapped class (``RelationSpec``).
One-to-many embeds a list per parent; ``limit`` is per parent (ROW_NUMBER() OVER
(PARTITION BY the foreign key)). Many-to-one embeds one object or null.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from tiddly.config import Config
from tiddly.errors import BadQuery
from tiddly.registry import ColumnSpec, Registry, RelationSpec, TableSpec
from tiddly.services.query import Query, _order_clauses, build_select, parse_query

INCLUDE_KEYS = ("where", "orderby", "select", "limit")
_RANK = "tiddly_rank"


@dataclass(frozen=True)
class Include:
    relation: RelationSpec
    target: TableSpec
    query: Query
    limit: int | None  # per parent; None: every related row

    @property
    def name(self) -> str:
        return self.relation.name


def parse_includes(registry: Registry, spec: TableSpec, raw: Any, config: Config) -> tuple[Include, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [name.strip() for name in raw.split(",") if name.strip()]
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise BadQuery("'include' takes a list of relationship names or an object of name -> options")
    return tuple(_include(registry, spec, name, options, config) for name, options in raw.items())


def _include(registry: Registry, spec: TableSpec, name: str, options: Any, config: Config) -> Include:
    relation = spec.relations.get(name)
    if relation is None:
        known = ", ".join(spec.relations) or "none"
        raise BadQuery(f"table '{spec.name}' has no relationship {name[:40]!r} to include; known: {known}",
                       include=name[:40])
    options = {} if options is None or options is True else options
    if not isinstance(options, dict):
        raise BadQuery(f"the options of include '{name}' must be an object")
    unknown = [key for key in options if key not in INCLUDE_KEYS]
    if unknown:
        raise BadQuery(f"unknown key {unknown[0]!r} in include '{name}'; known: {', '.join(INCLUDE_KEYS)}")
    if "limit" in options and not relation.many:
        raise BadQuery(f"'{name}' is one related row: 'limit' applies to one-to-many includes only")
    target = registry.get(relation.target)
    query = parse_query(target, options, config)
    return Include(relation, target, query, query.limit if "limit" in options else None)


def parent_columns(spec: TableSpec, includes: tuple[Include, ...]) -> list[ColumnSpec]:
    """The parent columns the includes join on (fetched even when not selected)."""
    return [spec.columns[local] for inc in includes for local, _ in inc.relation.pairs]


def load(session: Session, inc: Include, parents: list[dict]) -> list:
    """For each parent row, in order: its list of related rows (one-to-many) or its row or None."""
    local_names = [local for local, _ in inc.relation.pairs]
    keys = [tuple(row[name] for name in local_names) for row in parents]
    wanted = {key for key in keys if None not in key}
    found = _fetch(session, inc, wanted) if wanted else {}
    if inc.relation.many:
        return [found.get(key, []) for key in keys]
    return [found.get(key, [None])[0] for key in keys]


def _fetch(session: Session, inc: Include, keys: set[tuple]) -> dict[tuple, list[dict]]:
    remotes = [inc.target.columns[remote] for _, remote in inc.relation.pairs]
    selected = [c.name for c in inc.query.columns]
    columns = inc.query.columns + tuple(c for c in remotes if c.name not in selected)
    if len(remotes) == 1:
        matches = remotes[0].column.in_([key[0] for key in keys])
    else:
        matches = tuple_(*(c.column for c in remotes)).in_(list(keys))
    stmt = build_select(inc.target, replace(inc.query, columns=columns, limit=None, offset=0)).where(matches)
    if inc.limit is not None:
        stmt = _top_per_parent(stmt, inc, remotes, columns)
    found: dict[tuple, list[dict]] = {}
    for row in session.execute(stmt).mappings():
        key = tuple(row[c.name] for c in remotes)
        found.setdefault(key, []).append({name: row[name] for name in selected})
    return found


def _top_per_parent(stmt, inc: Include, remotes: list[ColumnSpec], columns) -> Any:
    rank = func.row_number().over(partition_by=[c.column for c in remotes],
                                  order_by=_order_clauses(inc.query.order)).label(_RANK)
    ranked = stmt.add_columns(rank).order_by(None).subquery()
    return (select(*(ranked.c[c.name] for c in columns))
            .where(ranked.c[_RANK] <= inc.limit).order_by(ranked.c[_RANK]))


def requested_names(raw_query: Any) -> list[str]:
    """The relationship names a query's ``include`` asks for, read leniently (the parse checks them)."""
    raw = raw_query.get("include") if isinstance(raw_query, dict) else None
    if isinstance(raw, str):
        return [name.strip() for name in raw.split(",")]
    if isinstance(raw, (list, dict)):
        return [name for name in raw if isinstance(name, str)]
    return []
