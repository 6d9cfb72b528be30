"""A parsed PostgREST request (grammar.py) -> a typed read plan, and rows -> PostgREST's shape.

Every name is resolved against the registry as the caller sees it (a key limited to some
tables finds no relation to another), and every filter value, which arrives as text, is
turned by ``ColumnSpec.parse_text`` into the value its column's check takes, then checked:
hidden columns stay unfilterable, values are typed before any SQL runs. Embeds become
includes along the registry's relations (foreign keys, named after the other table);
``!inner`` and ``?rel=is.null`` become the include's ``exists``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from tiddly.config import Config
from tiddly.errors import BadQuery, BadValue
from tiddly.registry import ColumnSpec, Registry, TableSpec
from tiddly.services.plan import (
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Include,
    Not,
    OrderTerm,
    Read,
    conjoin,
)
from tiddly.web.postgrest.grammar import (
    Embed,
    Filter,
    Logic,
    Node,
    PostgrestError,
    not_embedded,
)

# PostgREST's operator names -> the engine's (services/query.py OPERATORS)
_OPERATORS = {"eq": "eq", "neq": "ne", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte",
              "like": "like", "ilike": "ilike"}


def read(view: Registry, spec: TableSpec, node: Node, config: Config, limit: int | None = None,
         offset: int = 0, count: bool = False) -> Read:
    """The read of ``node`` on ``spec`` (the root: its page and count; embeds resolved)."""
    items = _select_items(node)
    if items > config.max_select_items:
        raise BadQuery(f"'select' names {items} columns and embeds; at most {config.max_select_items} "
                       "(TIDDLY_MAX_SELECT_ITEMS)")
    return replace(_read(view, spec, node, config), limit=limit, offset=offset, count=count)


def _select_items(node: Node) -> int:
    """The columns (aliases included: each is one more key of every row) and embeds of a select."""
    return len(node.fields) + sum(1 + _select_items(embed.node) for embed in node.embeds)


def where(spec: TableSpec, conditions: list, config: Config) -> Condition | None:
    """ANDed filters and logic trees (None: no condition)."""
    return conjoin(_condition(spec, c, config) for c in conditions)


def _read(view: Registry, spec: TableSpec, node: Node, config: Config) -> Read:
    includes = []
    for embed in node.embeds:  # resolved: see resolve()
        if any(inc.name == embed.relation for inc in includes):
            raise PostgrestError(400, "PGRST127", "Feature not implemented",
                                 f"'{embed.relation}' is embedded twice; embed each relation once")
        includes.append(_include(view, spec, embed, config))
    named = tuple(dict.fromkeys(spec.column(column) for _key, column in node.fields))  # each name checked
    if node.star:
        columns = spec.readable
    else:  # embeds alone still need one column to stand on; projection leaves it out
        columns = named or ((spec.primary_key or spec.readable)[0],)
    read = Read(spec, columns, where(spec, node.conditions, config), includes=tuple(includes))
    return replace(read, order=order(spec, node, read))


def _include(view: Registry, spec: TableSpec, embed: Embed, config: Config) -> Include:
    relation = spec.relations[embed.relation]
    target = view.get(relation.target)
    node = embed.node
    if _empty(node):
        related = Read(target, (), where(target, node.conditions, config))
    else:
        related = _read(view, target, node, config)
    if (node.limit is not None or node.offset is not None) and not relation.many:
        raise BadQuery(f"'{embed.key}' is one related row: 'limit' and 'offset' apply to one-to-many embeds only")
    if node.limit is not None and node.limit > config.max_limit:
        raise BadQuery(f"'{embed.key}.limit' is at most {config.max_limit}, got {node.limit}")
    related = replace(related, limit=node.limit, offset=node.offset or 0)
    exists = True if embed.inner else embed.exists
    return Include(relation, related, exists, loaded=not _empty(node))


def resolve(view: Registry, spec: TableSpec, node: Node) -> None:
    """Name each embed's relation in the registry (``embed.relation``), at every depth:
    ``stores``, or ``users!sender_id`` when a hint picks one of several foreign keys; ``view``
    holds only the tables the caller may see. A PGRST200 when there is none, a PGRST201 when
    the name leaves several; a related order names a to-one embed."""
    for embed in node.embeds:
        embed.relation = _relation(spec, embed)
        if embed.spread and spec.relations[embed.relation].many:
            raise PostgrestError(400, "PGRST127", "Feature not implemented",
                                 f"'{embed.relation}' is many rows: only a to-one relation spreads here")
        resolve(view, view.get(spec.relations[embed.relation].target), embed.node)
    for term in node.order or ():
        embed = node.embed(term.embed) if term.embed is not None else None
        if term.embed is not None and embed is None:
            raise not_embedded(term.embed)
        if embed is not None and spec.relations[embed.relation].many:
            raise PostgrestError(400, "PGRST118", f"A related order on '{embed.key}' is not possible",
                                 f"'{spec.name}' and '{embed.key}' do not form a many-to-one or one-to-one "
                                 "relationship")


def _relation(spec: TableSpec, embed: Embed) -> str:
    name, hint = embed.relation, embed.hint
    relations = spec.relations
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


def order(spec: TableSpec, node: Node, read: Read | None = None) -> tuple[OrderTerm, ...]:
    """The node's ``order``, ended by the primary key. NULLs go where PostgreSQL puts them, on
    every database: last ascending, first descending, unless the client placed them."""
    terms = []
    for term in node.order or ():
        via = node.embed(term.embed).relation if term.embed is not None else None
        table = spec if via is None else next(inc.read.table for inc in read.includes if inc.name == via)
        nulls = term.nulls or ("first" if term.descending else "last")
        terms.append(OrderTerm(table.column(term.column), term.descending, nulls, via))
    named = {t.column.name for t in terms if t.via is None}
    return tuple(terms) + tuple(OrderTerm(col) for col in spec.primary_key if col.name not in named)


# -- filters -----------------------------------------------------------------------------

def _condition(spec: TableSpec, item: Filter | Logic, config: Config) -> Condition:
    if isinstance(item, Logic):
        parts = tuple(_condition(spec, part, config) for part in item.items)
        found = AllOf(parts) if item.op == "and" else AnyOf(parts)
    else:
        found = _filter(spec.column(item.column), item, config)
    return Not(found) if item.negate else found


def _filter(col: ColumnSpec, item: Filter, config: Config) -> Condition:
    if item.op == "in":
        if len(item.value) > config.max_in_length:
            raise BadQuery(f"'in' lists at most {config.max_in_length} values", column=col.name)
        return Compare(col, "in", [_value(col, "eq", value) for value in item.value])
    if item.op == "is":
        if item.value == "not_null":
            return Compare(col, "ne", None)
        truth = {"true": True, "false": False}.get(item.value)
        if truth is not None and col.kind != "boolean":
            raise BadValue(f"'is' on '{col.name}' takes null here: true and false need a boolean column",
                           column=col.name)
        return Compare(col, "is", truth)
    if item.op == "isdistinct":
        return AnyOf((Compare(col, "ne", _value(col, "ne", item.value)), Compare(col, "eq", None)))
    op = _OPERATORS[item.op]
    if item.modifier is not None:
        if len(item.value) > config.max_in_length:
            raise BadQuery(f"'{item.op}({item.modifier})' lists at most {config.max_in_length} values",
                           column=col.name)
        parts = tuple(Compare(col, op, _value(col, op, value)) for value in item.value)
        return AnyOf(parts) if item.modifier == "any" else AllOf(parts)
    return Compare(col, op, _value(col, op, item.value))


def _value(col: ColumnSpec, op: str, text: str) -> Any:
    if op in ("like", "ilike"):
        if col.kind != "string":
            raise BadValue(f"'{op}' on '{col.name}' needs a text column and a string pattern", column=col.name)
        return text.replace("*", "%")
    value = col.parse_text(text)
    if isinstance(value, (dict, list)) or value is None:
        raise BadValue(f"column '{col.name}' compares to a single value here", column=col.name)
    return col.coerce(value)


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
