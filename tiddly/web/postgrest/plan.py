"""A parsed PostgREST request (grammar.py) -> a typed read plan, and rows -> PostgREST's shape.

Every name is resolved against the registry as the caller sees it (a key limited to some
tables finds no relation to another), and every filter value, which arrives as text, is
turned by ``ColumnSpec.parse_text`` into the value its column's check takes, then checked:
hidden columns stay unfilterable, values are typed before any SQL runs. Embeds become
includes along the registry's relations (foreign keys, named after the other table);
``!inner`` and ``?rel=is.null`` become the include's ``exists``.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import replace
from typing import Any

from sqlalchemy import JSON

from tiddly.config import Config
from tiddly.errors import BadQuery, BadValue, UnknownColumn
from tiddly.registry import ColumnSpec, Registry, RelationSpec, TableSpec
from tiddly.services import aggregate, query
from tiddly.services.aggregate import FUNCTIONS
from tiddly.services.plan import (
    Aggregate,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Derived,
    Function,
    Include,
    Not,
    OrderTerm,
    Read,
    conjoin,
)
from tiddly.services.query import CASTS, derived_kind
from tiddly.web.postgrest import grammar
from tiddly.web.postgrest.grammar import (
    Embed,
    Field,
    Filter,
    Logic,
    Node,
    PostgrestError,
    not_embedded,
    not_implemented,
)

# PostgREST's operator names -> the engine's (services/query.py OPERATORS)
_OPERATORS = {"eq": "eq", "neq": "ne", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte",
              "like": "like", "ilike": "ilike", "match": "match", "imatch": "imatch"}
# ... and those of structured values (JSON, arrays, ranges, text search documents), with PostgreSQL's SQL
_STRUCTURED = {"cs": ("contains", "@>"), "cd": ("contained_by", "<@"), "ov": ("overlaps", "&&"),
               "sl": ("strictly_left", "<<"), "sr": ("strictly_right", ">>"), "nxr": ("not_right", "&<"),
               "nxl": ("not_left", "&>"), "adj": ("adjacent", "-|-"), "fts": ("fts", "@@"),
               "plfts": ("plfts", "@@"), "phfts": ("phfts", "@@"), "wfts": ("wfts", "@@")}


def read(view: Registry, spec: TableSpec, node: Node, config: Config, limit: int | None = None,
         offset: int = 0, count: bool = False) -> Read:
    """The read of ``node`` on ``spec`` (the root: its page and count; embeds resolved)."""
    items = _select_items(node)
    if items > config.max_select_items:
        raise BadQuery(f"'select' names {items} columns and embeds; at most {config.max_select_items} "
                       "(TIDDLY_MAX_SELECT_ITEMS)")
    return replace(_read(view, spec, node, config, spec.name), limit=limit, offset=offset, count=count)



def _select_items(node: Node) -> int:
    """The columns (aliases included: each is one more key of every row) and embeds of a select."""
    return len(node.fields) + sum(1 + _select_items(embed.node) for embed in node.embeds)


def where(spec: TableSpec, conditions: list, config: Config, alias: str | None = None) -> Condition | None:
    """ANDed filters and logic trees (None: no condition). ``alias``: the table as PostgreSQL's
    messages name it (PostgREST's ``<table>_<depth>`` for an embedded one)."""
    return conjoin(_condition(spec, c, config, alias or spec.name) for c in conditions)


def _read(view: Registry, spec: TableSpec, node: Node, config: Config, alias: str, depth: int = 0) -> Read:
    includes = tuple(_include(view, spec, embed, config, depth + 1) for embed in node.embeds)  # see resolve()
    values, functions = [], []
    for index, item in enumerate(node.fields):
        if _is_aggregate(spec, item):
            functions.append(_function(spec, item, index, alias))
        else:
            values.append(_output(spec, item, index, alias))
    if node.star:
        values = list(spec.readable) + values
    elif not values and not functions:
        # Embeds alone still need one column to stand on; projection leaves it out.
        values = [(spec.primary_key or spec.readable)[0]]
    columns = tuple(dict.fromkeys(values))
    read = Read(spec, columns, where(spec, node.conditions, config, alias), includes=includes)
    read = replace(read, order=order(spec, node, read, alias=alias))
    if not functions and not any(_aggregated(view.get(e.link.target), e.node) for e in node.embeds if e.spread):
        return read
    group = tuple(value for value in columns if isinstance(value, ColumnSpec))
    if len(group) != len(columns):
        raise not_implemented("aggregates beside JSON paths or casts")
    joins, joined = [], frozenset({spec.name})
    for index, (embed, inc) in enumerate(zip(node.embeds, includes)):
        join, spread_group, spread_functions, joined = _spread_parts(view, embed, inc, str(index), depth + 1, joined)
        joins.append(join)
        group, functions = group + spread_group, functions + spread_functions
    outputs = {value.name: value if isinstance(value, ColumnSpec) else
               aggregate.output_spec(value.name, derived_kind(value)) for value in group}
    outputs.update({fn.alias: aggregate.output_spec(fn.alias, aggregate.result_kind(fn.name, fn.column, fn.cast))
                    for fn in functions})
    plan = Aggregate(group, tuple(functions), False, outputs, joins=tuple(joins))
    return replace(read, includes=(), aggregate=plan)


def _is_aggregate(spec: TableSpec, item: Field) -> bool:
    """An aggregate: ``col.sum()``, ``count()``, or ``count`` alone where no column has that name
    (PostgreSQL reads ``table.count`` as ``count(table)``, and PostgREST's embeds rely on it)."""
    return item.aggregate is not None or (item.plain and item.column == "count" and "count" not in spec.columns)


def _aggregated(spec: TableSpec, node: Node) -> bool:
    """Whether a node's select aggregates."""
    return any(_is_aggregate(spec, item) for item in node.fields)


def _spread_parts(view: Registry, embed: Embed, inc: Include, prefix: str, depth: int,
                  joined: frozenset[str]) -> tuple[Include, tuple, list, frozenset[str]]:
    """A to-one spread beside aggregates: the include to join (its where, its own spreads), and
    its select items as group values and functions of the parent's aggregate, named apart.
    ``joined``: the tables already in the grouped read's FROM (each may be there once); the
    fourth value returned: those and the spread's."""
    target, node = view.get(embed.link.target), embed.node
    alias = f"{target.name}_{depth}"
    if not embed.spread or embed.link.many or target.name in joined:
        raise not_implemented("aggregates beside embedded resources other than spread to-one ones of other tables")
    joined = joined | {target.name}
    group, functions = [], []
    for index, item in enumerate(_spread_items(target, node)):
        name = f"tiddly_s{prefix}_{index}"
        if _is_aggregate(target, item):
            functions.append(replace(_function(target, item, index, alias), alias=name))
        else:
            col = _column(target, item.column, alias)
            group.append(_derived(col, name, item.path, item.cast) if item.path or item.cast else Derived(name, col))
    nested = []
    for index, (child, child_inc) in enumerate(zip(node.embeds, inc.read.includes)):
        join, more_group, more_functions, joined = _spread_parts(view, child, child_inc, f"{prefix}_{index}",
                                                                 depth + 1, joined)
        nested.append(join)
        group += list(more_group)
        functions += more_functions
    join = replace(inc, read=Read(target, (), inc.read.where, includes=tuple(nested)))
    return join, tuple(group), functions, joined


def _spread_items(spec: TableSpec, node: Node) -> list[Field]:
    return ([grammar.Field(c.name, c.name) for c in spec.readable] if node.star else []) + node.fields


def _spread_keys(registry: Registry, embed: Embed, prefix: str) -> list[tuple[str, str]]:
    """(key, row name) of a spread's items in an aggregated row (named as ``_spread_parts`` names them)."""
    target = registry.get(embed.link.target)
    keys = [(item.key, f"tiddly_s{prefix}_{index}") for index, item in enumerate(_spread_items(target, embed.node))]
    for index, child in enumerate(embed.node.embeds):
        keys += _spread_keys(registry, child, f"{prefix}_{index}")
    return keys


def row_name(item: Field, index: int) -> str:
    """The name the rows give a select item: its column's for a plain column, else its own."""
    if item.column != "*" and not item.path and not item.cast and not item.aggregate:
        return item.column
    return f"tiddly_{index}"


def _column(spec: TableSpec, name: str, alias: str) -> ColumnSpec:
    """The readable column ``name``, or PostgreSQL's 42703 (a hidden column is one that does not exist)."""
    try:
        return spec.column(name)
    except UnknownColumn:
        raise PostgrestError(400, "42703", f"column {alias}.{name[:60]} does not exist") from None


def _output(spec: TableSpec, item: Field, index: int, alias: str) -> ColumnSpec | Derived:
    col = _column(spec, item.column, alias)
    if not item.path and not item.cast:
        return col
    return _derived(col, row_name(item, index), item.path, item.cast)


def _derived(col: ColumnSpec, name: str, path: tuple, cast: str | None) -> Derived:
    if path and not isinstance(col.column.type, JSON):
        raise PostgrestError(400, "42883", f"operator does not exist: {col.kind} {path[0][0]} unknown",
                             hint=f"'{col.name}' is not a JSON column: JSON paths need one")
    if cast is not None and cast not in CASTS:
        raise PostgrestError(400, "42704", f'type "{cast[:40]}" does not exist',
                             hint="Tiddly casts to: " + ", ".join(CASTS))
    keys = tuple(int(key) if re.fullmatch(r"-?\d{1,9}", key) else key for _step, key in path)
    return Derived(name, col, keys, bool(path) and path[-1][0] == "->>", cast)


def _function(spec: TableSpec, item: Field, index: int, alias: str) -> Function:
    name = "count" if item.aggregate is None else item.aggregate
    col = None if item.column in ("*", "count") and name == "count" else _column(spec, item.column, alias)
    if item.path or item.cast:
        raise not_implemented("aggregates of JSON paths or casts")
    if col is not None and FUNCTIONS[name][1] and col.kind not in aggregate.NUMERIC:
        raise PostgrestError(400, "42883", f"function {name}({col.kind}) does not exist")
    cast = item.aggregate_cast
    if cast is not None and cast not in CASTS:
        raise PostgrestError(400, "42704", f'type "{cast[:40]}" does not exist',
                             hint="Tiddly casts to: " + ", ".join(CASTS))
    return Function(row_name(item, index), name, col, cast)


def _include(view: Registry, spec: TableSpec, embed: Embed, config: Config, depth: int) -> Include:
    relation = embed.link
    target = view.get(relation.target)
    node = embed.node
    alias = f"{target.name}_{depth}"
    if _empty(node):
        related = Read(target, (), where(target, node.conditions, config, alias))
    else:
        related = _read(view, target, node, config, alias, depth)
    if (node.limit is not None or node.offset is not None) and not relation.many:
        raise BadQuery(f"'{embed.key}' is one related row: 'limit' and 'offset' apply to one-to-many embeds only")
    if node.limit is not None and node.limit > config.max_limit:
        raise BadQuery(f"'{embed.key}.limit' is at most {config.max_limit}, got {node.limit}")
    related = replace(related, limit=node.limit, offset=node.offset or 0)
    exists = True if embed.inner else embed.exists
    return Include(relation, related, exists, loaded=not _empty(node), key=embed.key)


def resolve(view: Registry, spec: TableSpec, node: Node, depth: int = 1) -> None:
    """Find each embed's link in the registry (``embed.link``), at every depth, as PostgREST
    finds it: ``view`` holds only the tables the caller may see. A PGRST200 when there is none,
    a PGRST201 when the name and hint leave several, a 42712 when two embeds of one table take
    the same key; a related order names a to-one embed."""
    keys = set()
    for embed in node.embeds:
        if embed.key in keys:
            raise PostgrestError(400, "42712", f'table name "{spec.name}_{embed.key}_{depth}" specified more than once')
        keys.add(embed.key)
        embed.link = _link(view, spec, embed)
        resolve(view, view.get(embed.link.target), embed.node, depth + 1)
    for term in node.order or ():
        embed = node.embed(term.embed) if term.embed is not None else None
        if term.embed is not None and embed is None:
            raise not_embedded(term.embed)
        if embed is not None and embed.link.many:
            raise PostgrestError(400, "PGRST118", f"A related order on '{embed.key}' is not possible",
                                 f"'{spec.name}' and '{embed.key}' do not form a many-to-one or one-to-one "
                                 "relationship")


def _link(view: Registry, spec: TableSpec, embed: Embed) -> RelationSpec:
    """The one link of ``spec`` that the embed's name and hint choose, by PostgREST's rules: the
    name is the related table's, or (for a table) the foreign key's constraint or its column;
    a hint is the constraint, a column of either side, or a many-to-many junction. A table that
    refers to itself has two links of one name: the name alone is the one-to-many one (its
    children), the column the many-to-one one (its parent)."""
    computed = spec.relations.get(embed.relation)
    if computed is not None and "/" in computed.target and embed.hint is None:
        return computed  # a computed relationship (services/functions.py with_functions)
    found = [link for link in spec.links if _chosen(view, spec, link, embed.relation, embed.hint)]
    if len(found) == 1:
        return found[0]
    name = embed.relation
    if found:
        raise PostgrestError(
            300, "PGRST201", f"Could not embed because more than one relationship was found for '{spec.name}' and "
                             f"'{name}'", [_described(spec, link) for link in found],
            f"Try changing '{name}' to one of the following: "
            + ", ".join(f"'{link.target}!{link.junction.name if link.junction else link.constraint}'" for link in found)
            + ". Find the desired relationship in the 'details' key.")
    hinted = f"' using the hint '{embed.hint}" if embed.hint else ""
    raise PostgrestError(
        400, "PGRST200", f"Could not find a relationship between '{spec.name}' and '{name}' in the schema cache",
        f"Searched for a foreign key relationship between '{spec.name}' and '{name}{hinted}' "
        "in the schema 'public', but no matches were found.", _nearest(name, {link.target for link in spec.links}))


def _chosen(view: Registry, spec: TableSpec, link: RelationSpec, name: str, hint: str | None) -> bool:
    single = len(link.pairs) == 1 and link.junction is None
    local, remote = link.pairs[0] if single else (None, None)
    to_many = link.many and link.junction is None and not link.one_to_one
    if link.target == spec.name:  # a table that refers to itself
        if hint is None:
            return (name == link.target and to_many) or (name == local and not link.many and not link.one_to_one)
        return name == link.target and to_many and hint == remote
    if hint is None:
        of_table = link.junction is None and not view.get(link.target).table.info.get("view")
        return name == link.target or (of_table and name in (link.constraint, local))
    return name == link.target and (hint in (link.constraint, local, remote)
                                    or (link.junction is not None and hint == link.junction.name))


def _described(spec: TableSpec, link: RelationSpec) -> dict:
    """A link as PGRST201's details describe it."""
    if link.junction is not None:
        junction = link.junction
        source = ", ".join(middle for _, middle in junction.source)
        target = ", ".join(middle for middle, _ in junction.target)
        relationship = (f"{junction.name} using {junction.constraints[0]}({source}) and "
                        f"{junction.constraints[1]}({target})")
    else:
        relationship = (f"{link.constraint} using {spec.name}({', '.join(a for a, _ in link.pairs)}) and "
                        f"{link.target}({', '.join(b for _, b in link.pairs)})")
    return {"cardinality": link.cardinality, "embedding": f"{spec.name} with {link.target}",
            "relationship": relationship}


def _nearest(name: str, names: set[str]) -> str | None:
    """PGRST200's hint: a related table whose name is close to the one asked for (not equal)."""
    close = difflib.get_close_matches(name, sorted(names - {name}), n=1, cutoff=0.75)
    return f"Perhaps you meant '{close[0]}' instead of '{name}'." if close else None


def order(spec: TableSpec, node: Node, read: Read | None = None, by_key: bool = False,
          alias: str | None = None) -> tuple[OrderTerm, ...]:
    """The node's ``order``, as PostgREST orders: only what the client named (no order at all:
    the rows as the database reads them), ended by the primary key only when ``by_key`` (a
    limited write chooses the same rows every time). NULLs go where PostgreSQL puts them, on
    every database: last ascending, first descending, unless the client placed them."""
    terms = []
    for term in node.order or ():
        via = node.embed(term.embed).key if term.embed is not None else None
        if via is None:
            value = _target(spec, term.column, alias or spec.name)
        else:
            table = next(inc.read.table for inc in read.includes if inc.name == via)
            value = _column(table, term.column, f"{table.name}_1")
        nulls = term.nulls or ("first" if term.descending else "last")
        terms.append(OrderTerm(value, term.descending, nulls, via))
    if not by_key:
        return tuple(terms)
    named = {t.column.name for t in terms if t.via is None}
    return tuple(terms) + tuple(OrderTerm(col) for col in spec.primary_key if col.name not in named)


def _target(spec: TableSpec, text: str, alias: str) -> ColumnSpec | Derived:
    """What a filter or an order names: a column, or a JSON path into one (``data->a->>b``)."""
    if "->" not in text:
        return _column(spec, text, alias)
    name, path = grammar.json_path(text, text)
    return _derived(_column(spec, name, alias), text, path, None)


# -- filters -----------------------------------------------------------------------------

def _condition(spec: TableSpec, item: Filter | Logic, config: Config, alias: str) -> Condition:
    if isinstance(item, Logic):
        parts = tuple(_condition(spec, part, config, alias) for part in item.items)
        found = AllOf(parts) if item.op == "and" else AnyOf(parts)
    else:
        found = _filter(_target(spec, item.column, alias), item, config)
    return Not(found) if item.negate else found


def _filter(target: ColumnSpec | Derived, item: Filter, config: Config) -> Condition:
    col = _checked_as(target, item)
    if isinstance(target, Derived):
        target = replace(target, text=True, cast="float8" if col.kind == "number" else None)
    return _compare(target, col, item, config)


def _checked_as(target: ColumnSpec | Derived, item: Filter) -> ColumnSpec:
    """The column a filter's values are checked against: the column itself, or for a JSON path
    one of the path's kind of value. A JSON value (``->``) compares as a number when the
    filter's values are numbers, else as text, on every database."""
    if isinstance(target, ColumnSpec):
        return target
    values = item.value if isinstance(item.value, list) else [item.value]
    numbers = not target.text and item.op != "is" and all(_is_number(v) for v in values)
    return replace(target.source, name=target.name, kind="number" if numbers else "string", nullable=True,
                   max_length=None)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _compare(target: ColumnSpec | Derived, col: ColumnSpec, item: Filter, config: Config) -> Condition:
    if item.op in _STRUCTURED:
        return _structured(target, item)
    if item.op == "in":
        if len(item.value) > config.max_in_length:
            raise BadQuery(f"'in' lists at most {config.max_in_length} values", column=col.name)
        return Compare(target, "in", [_value(col, "eq", value) for value in item.value])
    if item.op == "is":
        if item.value == "not_null":
            return Compare(target, "ne", None)
        truth = {"true": True, "false": False}.get(item.value)
        if truth is not None and col.kind != "boolean":
            raise BadValue(f"'is' on '{col.name}' takes null here: true and false need a boolean column",
                           column=col.name)
        return Compare(target, "is", truth)
    if item.op == "isdistinct":
        return AnyOf((Compare(target, "ne", _value(col, "ne", item.value)), Compare(target, "eq", None)))
    op = _OPERATORS[item.op]
    if item.modifier is not None:
        if len(item.value) > config.max_in_length:
            raise BadQuery(f"'{item.op}({item.modifier})' lists at most {config.max_in_length} values",
                           column=col.name)
        parts = tuple(Compare(target, op, _value(col, op, value)) for value in item.value)
        return AnyOf(parts) if item.modifier == "any" else AllOf(parts)
    return Compare(target, op, _value(col, op, item.value))


def _structured(target: ColumnSpec | Derived, item: Filter) -> Condition:
    """A filter of a structured value: its text read as the column holds it, then checked."""
    name, sql = _STRUCTURED[item.op]
    column = target if isinstance(target, ColumnSpec) else target.source
    if item.op in grammar.SEARCHES:
        value = (item.value, item.modifier)
    elif column.holds == "array":
        value = [_array_item(column, text) for text in grammar.parse_list(item.value, "{", "}", item.value)]
    elif column.holds == "json":
        value = _json_operand(item.value)
    else:
        value = item.value
    try:
        if not isinstance(target, ColumnSpec):
            raise BadValue(f"'{item.op}' compares a column, not a JSON path", column=column.name)
        return Compare(target, name, query.check_operand(query.OPERATORS[name], target, value))
    except BadValue as exc:
        held = column.holds or {"string": "text"}.get(column.kind, column.kind)
        raise PostgrestError(400, "42883", f"operator does not exist: {held} {sql} unknown",
                             hint=f"{exc.message}; SQLite and MariaDB hold no ranges or text search documents "
                                  "(docs/postgrest.md)") from None


def _json_operand(text: str) -> Any:
    """A JSON column's operand: JSON, or an array literal ``{a,b}`` (what clients send for a list)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.strip().startswith("{") and text.strip().endswith("}"):
        return grammar.parse_list(text, "{", "}", text)
    raise PostgrestError(400, "22P02", "invalid input syntax for type json", f"Token \"{text[:40]}\" is invalid.")


def _array_item(column: ColumnSpec, text: str) -> Any:
    """An item of an array literal, as the array's items are typed (PostgreSQL checks them again)."""
    try:
        python_type = column.column.type.item_type.python_type
    except (AttributeError, NotImplementedError):
        return text
    if text.upper() == "NULL":
        return None
    try:
        return python_type(text) if python_type in (int, float) else \
            {"t": True, "true": True, "f": False, "false": False}[text.lower()] if python_type is bool else text
    except (ValueError, KeyError):
        raise PostgrestError(400, "22P02", f'malformed array literal: "{text[:40]}"') from None


def _value(col: ColumnSpec, op: str, text: str) -> Any:
    if op in ("match", "imatch"):
        return query.check_operand(query.OPERATORS[op], col, text)
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
    """Whether rows need reshaping: an alias, a computed value, a column that only carried the
    embeds, a renamed embed."""
    return (not node.star and not node.fields) or not all(item.plain for item in node.fields) \
        or any(e.renamed or _empty(e.node) or needs_projection(e.node) for e in node.embeds)


def project(registry: Registry, spec: TableSpec, node: Node, rows: list[dict]) -> list[dict]:
    """Rows with PostgREST's keys: aliases, and only what ``select=`` named."""
    keys = [(c.name, c.name) for c in spec.readable] if node.star else []
    keys += [pair for pair in ((item.key, row_name(item, index)) for index, item in enumerate(node.fields))
             if pair not in keys]
    if _aggregated(spec, node) or any(_aggregated(registry.get(e.link.target), e.node) for e in node.embeds
                                      if e.spread):
        for index, embed in enumerate(node.embeds):  # an aggregate's spreads are in its rows already
            keys += _spread_keys(registry, embed, str(index))
        return [{key: row[name] for key, name in keys} for row in rows]
    embeds = [(e, registry.get(e.link.target), needs_projection(e.node))
              for e in node.embeds if not _empty(e.node)]
    return [_row(registry, keys, embeds, row) for row in rows]


def _row(registry: Registry, keys: list[tuple[str, str]], embeds: list, row: dict) -> dict:
    shaped = {key: row[name] for key, name in keys}
    for embed, target, reshape in embeds:
        value = row[embed.key]
        if value is not None and reshape:
            many = isinstance(value, list)
            value = project(registry, target, embed.node, value if many else [value])
            value = value if many else value[0]
        if embed.spread and isinstance(value, list):  # many rows: each key's values, in a list
            shaped.update({key: [item[key] for item in value]
                           for key in output_keys(registry, target, embed.node)})
        elif embed.spread:  # the related row's keys, null when there is none
            shaped.update(value if value is not None else dict.fromkeys(output_keys(registry, target, embed.node)))
        else:
            shaped[embed.key] = value
    return shaped


def output_keys(registry: Registry, spec: TableSpec, node: Node) -> list[str]:
    """The keys a row of ``node`` has once projected."""
    keys = [c.name for c in spec.readable] if node.star else []
    keys += [item.key for item in node.fields if item.key not in keys]
    for embed in node.embeds:
        if embed.spread:
            keys += output_keys(registry, registry.get(embed.link.target), embed.node)
        elif not _empty(embed.node):
            keys.append(embed.key)
    return keys


def _empty(node: Node) -> bool:
    return not node.star and not node.fields and not node.embeds


def shaped(view, spec: TableSpec, root: Node, data: list[dict]) -> list[dict]:
    """The rows as the select shapes them (aliases, casts, spreads...), when it does."""
    if needs_projection(root):
        return project(view, spec, root, data)
    return data
