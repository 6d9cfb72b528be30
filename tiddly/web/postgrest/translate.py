"""A parsed PostgREST request (grammar.py) -> Tiddly's own query object, and rows -> PostgREST's shape.

The query object is the one ``FETCH /<table>`` takes (``where``, ``orderby``,
``select``, ``limit``, ``offset``, ``count``, ``include``), so the same parser
checks every name and value: hidden columns stay unfilterable, values are typed
before any SQL runs. Filter values arrive as text; ``ColumnSpec.parse_text``
turns each into the JSON value its column's check expects. Embeds become
includes, along the registry's relations (foreign keys, named after the other
table); ``!inner`` and ``?rel=is.null`` become the include's ``exists``.
"""
from __future__ import annotations

from collections.abc import Container
from typing import Any

from tiddly.registry import Registry, TableSpec
from tiddly.web.postgrest.grammar import (
    Embed,
    Filter,
    Logic,
    Node,
    Order,
    PostgrestError,
    not_embedded,
)

_OPERATORS = {"eq": "eq", "neq": "ne", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte",
              "like": "like", "ilike": "ilike"}


def query(registry: Registry, spec: TableSpec, node: Node, limit: int | None, offset: int,
          count: bool) -> dict:
    """The query object for ``node`` on ``spec`` (the root: page, count, includes)."""
    raw = _raw(registry, spec, node)
    if limit is not None:
        raw["limit"] = limit
    raw["offset"] = offset
    if count:
        raw["count"] = True
    return raw


def where(spec: TableSpec, conditions: list) -> dict | None:
    """Tiddly's ``where`` for ANDed filters and logic trees (None: no condition)."""
    parts = [_condition(spec, c) for c in conditions]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"and": parts}


def _raw(registry: Registry, spec: TableSpec, node: Node) -> dict:
    raw: dict[str, Any] = {}
    condition = where(spec, node.conditions)
    if condition is not None:
        raw["where"] = condition
    if node.order:
        raw["orderby"] = orderby(node)
    if not node.star:
        names = list(dict.fromkeys(column for _key, column in node.fields))
        # Embeds alone still need one column to stand on; projection leaves it out.
        raw["select"] = names or [(spec.primary_key or spec.readable)[0].name]
    includes = {}
    for embed in node.embeds:  # resolved: see resolve()
        relation = embed.relation
        if relation in includes:
            raise PostgrestError(400, "PGRST127", "Feature not implemented",
                                 f"'{relation}' is embedded twice; embed each relation once")
        includes[relation] = _include(registry, spec, embed)
    if includes:
        raw["include"] = includes
    return raw


def _include(registry: Registry, spec: TableSpec, embed: Embed) -> dict:
    target = registry.get(spec.relations[embed.relation].target)
    node = embed.node
    empty = not node.star and not node.fields and not node.embeds
    raw = _raw(registry, target, node) if not empty else {"select": []}
    if empty and node.conditions:
        raw["where"] = where(target, node.conditions)
    for name in ("limit", "offset"):
        if getattr(node, name) is not None:
            raw[name] = getattr(node, name)
    exists = True if embed.inner else embed.exists
    if exists is not None:
        raw["exists"] = exists
    return raw


def resolve(registry: Registry, spec: TableSpec, node: Node, visible: Container[str] | None = None) -> None:
    """Name each embed's relation in the registry (``embed.relation``), at every depth:
    ``stores``, or ``users!sender_id`` when a hint picks one of several foreign keys; only
    relations to the ``visible`` tables count (None: all). A PGRST200 when there is none, a
    PGRST201 when the name leaves several; a related order names a to-one embed."""
    for embed in node.embeds:
        embed.relation = _relation(spec, embed, visible)
        if embed.spread and spec.relations[embed.relation].many:
            raise PostgrestError(400, "PGRST127", "Feature not implemented",
                                 f"'{embed.relation}' is many rows: only a to-one relation spreads here")
        resolve(registry, registry.get(spec.relations[embed.relation].target), embed.node, visible)
    for order in node.order or ():
        embed = node.embed(order.embed) if order.embed is not None else None
        if order.embed is not None and embed is None:
            raise not_embedded(order.embed)
        if embed is not None and spec.relations[embed.relation].many:
            raise PostgrestError(400, "PGRST118", f"A related order on '{embed.key}' is not possible",
                                 f"'{spec.name}' and '{embed.key}' do not form a many-to-one or one-to-one "
                                 "relationship")


def _relation(spec: TableSpec, embed: Embed, visible: Container[str] | None) -> str:
    name, hint = embed.relation, embed.hint
    relations = {key: relation for key, relation in spec.relations.items()
                 if visible is None or relation.target in visible}
    named = [key for key in relations if key == name or key.startswith(name + "!")]
    if hint is not None:
        named = [key for key in named if hint in relations[key].hints
                 or hint in {column for pair in relations[key].pairs for column in pair}]
    elif name in relations:
        named = [name]
    if len(named) > 1:
        raise PostgrestError(300, "PGRST201", f"Could not embed because more than one relationship was found for "
                                              f"'{spec.name}' and '{name}'", None,
                             f"Try changing '{name}' to one of the following: "
                             + ", ".join(f"'{key}'" for key in named))
    if not named:
        hinted = f"' using the hint '{hint}" if hint else ""
        raise PostgrestError(
            400, "PGRST200", f"Could not find a relationship between '{spec.name}' and '{name}' in the schema cache",
            f"Searched for a foreign key relationship between '{spec.name}' and '{name}{hinted}' "
            "in the schema 'public', but no matches were found.",
            f"Relations of '{spec.name}': {', '.join(relations) or 'none'}")
    return named[0]


def orderby(node: Node) -> list[str] | None:
    """Tiddly's ``orderby`` for the node's ``order`` (None: none given)."""
    return [_order_term(node, order) for order in node.order] if node.order else None


def _order_term(node: Node, order: Order) -> str:
    """Tiddly's orderby term. NULLs go where PostgreSQL puts them, on every database: last
    ascending, first descending, unless the client placed them."""
    name = _quoted(order.column)
    if order.embed is not None:
        name = f"{_quoted(node.embed(order.embed).relation)}({name})"
    nulls = order.nulls or ("first" if order.descending else "last")
    return f"{name} {'desc' if order.descending else 'asc'} nulls {nulls}"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- filters -----------------------------------------------------------------------------

def _condition(spec: TableSpec, item: Filter | Logic) -> dict:
    if isinstance(item, Logic):
        found = {item.op: [_condition(spec, part) for part in item.items]}
    else:
        found = _filter(spec, item)
    return {"not": found} if item.negate else found


def _filter(spec: TableSpec, item: Filter) -> dict:
    col = spec.column(item.column)
    name = col.name
    if item.op == "in":
        return {name: {"in": [col.parse_text(value) for value in item.value]}}
    if item.op == "is":
        if item.value == "not_null":
            return {name: {"ne": None}}
        return {name: {"is": {"true": True, "false": False}.get(item.value)}}
    if item.op == "isdistinct":
        return {"or": [{name: {"ne": col.parse_text(item.value)}}, {name: None}]}
    if item.modifier is not None:
        parts = [{name: {_OPERATORS[item.op]: _value(col, item.op, value)}} for value in item.value]
        return {"or" if item.modifier == "any" else "and": parts}
    return {name: {_OPERATORS[item.op]: _value(col, item.op, item.value)}}


def _value(col, op: str, text: str) -> Any:
    if op in ("like", "ilike"):
        return text.replace("*", "%")
    return col.parse_text(text)


# -- rows in PostgREST's shape -------------------------------------------------------------

def needs_projection(node: Node) -> bool:
    """Whether rows need reshaping: an alias, a column that only carried the embeds, a renamed embed."""
    return (not node.star and not node.fields) or any(key != column for key, column in node.fields) \
        or any(e.renamed or _empty(e.node) or needs_projection(e.node) for e in node.embeds)


def project(registry: Registry, spec: TableSpec, node: Node, rows: list[dict]) -> list[dict]:
    """Rows with PostgREST's keys: aliases, and only what ``select=`` named."""
    keys = [(c.name, c.name) for c in spec.readable] if node.star else []
    keys += [pair for pair in node.fields if pair not in keys]
    embeds = [(e, registry.get(spec.relations[e.relation].target), needs_projection(e.node))
              for e in node.embeds if not _empty(e.node)]
    return [_row(registry, keys, embeds, row) for row in rows]


def _row(registry: Registry, keys: list[tuple[str, str]], embeds: list, row: dict) -> dict:
    shaped = {key: row[column] for key, column in keys}
    for embed, target, reshape in embeds:
        value = row[embed.relation]
        if value is not None and reshape:
            many = isinstance(value, list)
            value = project(registry, target, embed.node, value if many else [value])
            value = value if many else value[0]
        if embed.spread:  # the related row's keys, null when there is none
            shaped.update(value if value is not None else dict.fromkeys(output_keys(registry, target, embed.node)))
        else:
            shaped[embed.key] = value
    return shaped


def output_keys(registry: Registry, spec: TableSpec, node: Node) -> list[str]:
    """The keys a row of ``node`` has once projected."""
    keys = [c.name for c in spec.readable] if node.star else []
    keys += [key for key, _column in node.fields if key not in keys]
    for embed in node.embeds:
        if embed.spread:
            keys += output_keys(registry, registry.get(spec.relations[embed.relation].target), embed.node)
        elif not _empty(embed.node):
            keys.append(embed.key)
    return keys


def _empty(node: Node) -> bool:
    return not node.star and not node.fields and not node.embeds
