"""Related rows for a page (``"include"``): one query per relationship, whatever the page size.

``"include": ["items"]`` or ``{"items": {"where": ..., "orderby": ..., "select": ..., "limit": 5}}``
follows a relationship of the table (``RelationSpec``: a foreign key, or a mapper's relationship).
One-to-many embeds a list per parent; ``limit`` is per parent (ROW_NUMBER() OVER
(PARTITION BY the foreign key)). Many-to-one embeds one object or null.

Embedding (the PostgREST dialect) reads a few more keys, ``EMBED_KEYS``: ``include``
inside an include (nested, still one query per relationship and level), a per-parent
``offset``, ``"exists": true|false`` (only the parents that have, or have no, matching
related rows: a correlated EXISTS in the parents' where) and ``"select": []`` (filter
by the relation without loading it); and the rows' ``orderby`` may name a to-one include's
column, ``"stores(name) desc"``. Tiddly's own query language keeps to ``INCLUDE_KEYS``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, exists, func, not_, select, tuple_
from sqlalchemy.orm import Session

from tiddly.config import Config
from tiddly.errors import BadQuery
from tiddly.registry import ColumnSpec, Registry, RelationSpec, TableSpec
from tiddly.services.query import (
    Query,
    Related,
    build_select,
    order_clauses,
    parse_query,
)

INCLUDE_KEYS = ("where", "orderby", "select", "limit")
EMBED_KEYS = INCLUDE_KEYS + ("offset", "include", "exists")
_RANK = "tiddly_rank"


@dataclass(frozen=True)
class Include:
    relation: RelationSpec
    target: TableSpec
    query: Query
    limit: int | None  # per parent; None: every related row
    offset: int = 0    # per parent
    children: tuple["Include", ...] = ()
    exists: bool | None = None  # only parents with (True) or without (False) a matching related row
    loaded: bool = True         # False: the include only filters the parents (``"select": []``)

    @property
    def name(self) -> str:
        return self.relation.name


def parse_includes(registry: Registry, spec: TableSpec, raw: Any, config: Config,
                   keys: tuple[str, ...] = INCLUDE_KEYS) -> tuple[Include, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [name.strip() for name in raw.split(",") if name.strip()]
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise BadQuery("'include' takes a list of relationship names or an object of name -> options")
    return tuple(_include(registry, spec, name, options, config, keys) for name, options in raw.items())


def _include(registry: Registry, spec: TableSpec, name: str, options: Any, config: Config,
             keys: tuple[str, ...]) -> Include:
    relation = spec.relations.get(name)
    if relation is None:  # ``registry`` holds the tables the caller may see: name no others
        known = ", ".join(n for n, r in spec.relations.items() if r.target in registry.tables) or "none"
        raise BadQuery(f"table '{spec.name}' has no relationship {name[:40]!r} to include; known: {known}",
                       include=name[:40])
    options = {} if options is None or options is True else options
    if not isinstance(options, dict):
        raise BadQuery(f"the options of include '{name}' must be an object")
    unknown = [key for key in options if key not in keys]
    if unknown:
        raise BadQuery(f"unknown key {unknown[0]!r} in include '{name}'; known: {', '.join(keys)}")
    if ("limit" in options or "offset" in options) and not relation.many:
        raise BadQuery(f"'{name}' is one related row: 'limit' and 'offset' apply to one-to-many includes only")
    target = registry.get(relation.target)
    loaded = not (keys == EMBED_KEYS and options.get("select") == [])
    children = parse_includes(registry, target, options.get("include"), config, keys)
    query = parse_query(target, {k: v for k, v in options.items()
                                 if k not in ("include", "exists") and (loaded or k != "select")}, config,
                        related_order(target, children) if keys == EMBED_KEYS else None)
    found = options.get("exists")
    if found is not None and (not isinstance(found, bool) or relation.target == spec.name):
        raise BadQuery(f"'exists' in include '{name}' takes true or false, and not on a table's relation to itself")
    return Include(relation, target, query, query.limit if "limit" in options else None, query.offset,
                   children, found, loaded)


def related_order(spec: TableSpec, includes: tuple[Include, ...]) -> Related:
    """Order ``spec``'s rows by a to-one include's column (``"orderby": "stores(name) desc"``):
    the related row's value, or NULL when the include's where leaves none, as a correlated subquery."""
    by_name = {inc.name: inc for inc in includes}

    def column(relation: str, name: str) -> tuple[ColumnSpec, Any]:
        inc = by_name.get(relation)
        if inc is None or inc.relation.many:
            raise BadQuery(f"'{relation[:40]}' in 'orderby' is not a to-one include of this query")
        col = inc.target.column(name)
        joined = [inc.target.columns[remote].column == spec.columns[local].column
                  for local, remote in inc.relation.pairs]
        return col, select(col.column).where(*joined, inc.query.where).correlate(spec.table).scalar_subquery()

    return column


def parent_columns(spec: TableSpec, includes: tuple[Include, ...]) -> list[ColumnSpec]:
    """The parent columns the includes join on (fetched even when not selected)."""
    return [spec.columns[local] for inc in includes if inc.loaded for local, _ in inc.relation.pairs]


def exists_clauses(spec: TableSpec, includes: tuple[Include, ...]) -> list:
    """The parents' conditions for includes with ``exists``: a correlated EXISTS (or NOT EXISTS)
    on the related table, with the include's where and its own children's conditions."""
    clauses = []
    for inc in includes:
        if inc.exists is None:
            continue
        joined = [inc.target.columns[remote].column == spec.columns[local].column
                  for local, remote in inc.relation.pairs]
        # Correlated with the parent alone: a table met again further down is its own FROM there.
        found = exists().where(*joined, inc.query.where, *exists_clauses(inc.target, inc.children)) \
            .correlate(spec.table)
        clauses.append(found if inc.exists else not_(found))
    return clauses


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
    columns = {c.name: c for c in inc.query.columns + tuple(remotes) + tuple(
        parent_columns(inc.target, inc.children))}
    if len(remotes) == 1:
        matches = remotes[0].column.in_([key[0] for key in keys])
    else:
        matches = tuple_(*(c.column for c in remotes)).in_(list(keys))
    where = and_(inc.query.where, matches, *exists_clauses(inc.target, inc.children))
    query = replace(inc.query, columns=tuple(columns.values()), where=where, limit=None, offset=0)
    stmt = build_select(inc.target, query)
    if inc.limit is not None or inc.offset:
        stmt = _top_per_parent(stmt, inc, remotes, columns.values())
    rows = [dict(row) for row in session.execute(stmt).mappings()]
    shown = [child for child in inc.children if child.loaded]
    for child in shown:
        for row, related in zip(rows, load(session, child, rows)):
            row[child.name] = related
    names = selected + [child.name for child in shown]
    found: dict[tuple, list[dict]] = {}
    for row in rows:
        found.setdefault(tuple(row[c.name] for c in remotes), []).append({name: row[name] for name in names})
    return found


def _top_per_parent(stmt, inc: Include, remotes: list[ColumnSpec], columns) -> Any:
    rank = func.row_number().over(partition_by=[c.column for c in remotes],
                                  order_by=order_clauses(inc.query.order)).label(_RANK)
    ranked = stmt.add_columns(rank).order_by(None).subquery()
    window = [ranked.c[_RANK] > inc.offset]
    if inc.limit is not None:
        window.append(ranked.c[_RANK] <= inc.offset + inc.limit)
    return select(*(ranked.c[c.name] for c in columns)).where(*window).order_by(ranked.c[_RANK])


def requested_names(raw_query: Any) -> list[str]:
    """The relationship names a query's ``include`` asks for, read leniently (the parse checks them)."""
    raw = raw_query.get("include") if isinstance(raw_query, dict) else None
    if isinstance(raw, str):
        return [name.strip() for name in raw.split(",")]
    if isinstance(raw, (list, dict)):
        return [name for name in raw if isinstance(name, str)]
    return []
