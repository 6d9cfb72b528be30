"""A list request (GET/FETCH/QUERY on ``/<table>``): one page, its ``next`` cursor, its included rows.

Grouped, aggregated and distinct queries are answered by ``aggregate.py``.
Takes a Session, never commits.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import and_
from sqlalchemy.orm import Session

from tiddly.config import Config
from tiddly.errors import BadQuery
from tiddly.registry import Registry, TableSpec
from tiddly.services import aggregate, cursor, include
from tiddly.services.query import Query, build_count, build_select, parse_query

KEYS_PER_READ = 1000  # rows read back by primary key per statement: IN lists stay short


def fetch_page(session: Session, spec: TableSpec, raw: Any, config: Config,
               registry: Registry, key: bytes) -> dict:
    raw = {} if raw is None else raw
    if isinstance(raw, dict) and aggregate.requested(raw):
        return aggregate.fetch(session, spec, raw, config)
    query = parse_query(spec, raw, config)
    includes = include.parse_includes(registry, spec, raw.get("include"), config)
    print_ = cursor.fingerprint(spec.name, raw.get("where"), query.order)
    page = _resume(session.get_bind().dialect.name, query, raw, key, print_, config)
    rows = _rows(session, spec, page, include.parent_columns(spec, includes))
    result = _result(session, spec, query, includes, rows)
    if query.limit and len(rows) == query.limit:
        last = rows[-1]
        result["next"] = cursor.encode(key, [last[t.column.name] for t in query.order], print_, config)
    return result


def fetch_embedded(session: Session, spec: TableSpec, raw: dict, config: Config, registry: Registry,
                   keys: list[tuple] | None = None) -> dict:
    """A page by limit and offset (no cursor), its includes read with the embedding keys
    (include.EMBED_KEYS): the PostgREST dialect's reads. With ``keys``, the rows with those
    primary keys, in that order (what a write hands back), read in chunks."""
    includes = include.parse_includes(registry, spec, raw.get("include"), config, include.EMBED_KEYS)
    query = parse_query(spec, raw, config, include.related_order(spec, includes))
    query = replace(query, where=and_(query.where, *include.exists_clauses(spec, includes)))
    if keys is None:
        return _result(session, spec, query, includes,
                       _rows(session, spec, query, include.parent_columns(spec, includes)))
    data = []
    for start in range(0, len(keys), KEYS_PER_READ):
        chunk = keys[start:start + KEYS_PER_READ]
        chosen = replace(query, where=and_(query.where, spec.pk_in(chunk)), limit=None, offset=0)
        rows = {_key(spec, row): row for row in _rows(session, spec, chosen, include.parent_columns(spec, includes))}
        data += _shape(session, query, includes, [rows[key] for key in chunk if key in rows])
    return {"data": data}


def _key(spec: TableSpec, row: dict) -> tuple:
    return tuple(row[c.name] for c in spec.primary_key)


def _result(session: Session, spec: TableSpec, query: Query, includes, rows: list[dict]) -> dict:
    result: dict[str, Any] = {"data": _shape(session, query, includes, rows)}
    if query.count:
        result["count"] = session.execute(build_count(spec, query)).scalar_one()
    return result


def keyset_query(dialect_name: str, spec: TableSpec, raw: dict, config: Config, key: bytes) -> Query:
    """The query with its ``after`` cursor applied (used by exports too)."""
    query = parse_query(spec, raw, config)
    print_ = cursor.fingerprint(spec.name, raw.get("where"), query.order)
    return _resume(dialect_name, query, raw, key, print_, config)


def _resume(dialect_name: str, query: Query, raw: dict, key: bytes, print_: str, config: Config) -> Query:
    if raw.get("after") is None:
        return query
    if "offset" in raw:
        raise BadQuery("'after' and 'offset' do not mix: the cursor already says where the page starts")
    values = cursor.decode(key, raw["after"], print_, query.order, config)
    after = cursor.after_clause(query.order, values, dialect_name)
    return replace(query, where=and_(query.where, after))


def _rows(session: Session, spec: TableSpec, query: Query, join_columns: list) -> list[dict]:
    """The page's rows, with the order and join columns fetched even when not selected."""
    columns = {c.name: c for c in query.columns}
    for col in [t.column for t in query.order if t.related is None] + join_columns:
        columns.setdefault(col.name, col)
    stmt = build_select(spec, replace(query, columns=tuple(columns.values())))
    result = session.execute(stmt)
    names = tuple(result.keys())
    return [dict(zip(names, row)) for row in result]  # a third of the cost of dict(RowMapping)


def _shape(session: Session, query: Query, includes, rows: list[dict]) -> list[dict]:
    names = [c.name for c in query.columns]
    data = [{name: row[name] for name in names} for row in rows]
    for inc in includes:
        if not inc.loaded:
            continue
        for item, related in zip(data, include.load(session, inc, rows)):
            item[inc.name] = related
    return data
