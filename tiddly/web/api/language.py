"""Tiddly's JSON query language (docs/API.md) -> a typed read plan. Pure: no Flask, no SQL.

``read(view, spec, raw, config, cursor_key)`` checks a query object (every name against the
registry as the caller sees it, every operator, every value against its column's type) and
returns a ``plan.Read``. ``query_from_args`` turns the same query sent in a URL into that
object first. The operators are ``query.OPERATORS``, declared once.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from tiddly import jsonio
from tiddly.config import Config
from tiddly.errors import BadJson, BadQuery, BadValue, UnknownOperator
from tiddly.registry import ColumnSpec, Registry, TableSpec
from tiddly.services import aggregate, cursor
from tiddly.services.plan import (
    Aggregate,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Function,
    Include,
    Not,
    OrderTerm,
    Read,
)
from tiddly.services.query import MAX_OFFSET, OPERATORS, check_operand

QUERY_KEYS = ("where", "orderby", "select", "limit", "offset", "count")
PAGE_KEYS = ("after", "include", "group", "aggregate", "having", "distinct")
INCLUDE_KEYS = ("where", "orderby", "select", "limit")
AGGREGATE_KEYS = ("group", "aggregate", "having", "distinct")
_NOT_EXPORTED = ("include", "group", "aggregate", "having", "distinct", "count")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ORDER_TERM = re.compile(r'^\s*("(?:[^"]|"")+"|[^\s"]+)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?\s*$',
                         re.IGNORECASE)


@dataclass(frozen=True)
class Page:
    """A list request's plan, and what its ``next`` cursor is signed over."""
    read: Read
    fingerprint: str


def page(view: Registry, spec: TableSpec, raw: Any, config: Config, key: bytes) -> Page:
    """A list request (GET/FETCH/QUERY): a page, its includes, or a grouped read."""
    raw = _object(raw)
    if any(raw.get(name) not in (None, False) for name in AGGREGATE_KEYS):
        return Page(_grouped(spec, raw, config), "")
    read = _read(spec, raw, config)
    read = _with(read, includes=includes(view, spec, raw.get("include"), config))
    fingerprint = cursor.fingerprint(spec.name, raw.get("where"), read.order)
    return Page(_resumed(read, raw, key, fingerprint, config), fingerprint)


def export(spec: TableSpec, raw: Any, config: Config, key: bytes) -> Read:
    """An export: the rows a query matches, every one unless it names a limit, no page cap."""
    raw = _object(raw)
    for name in _NOT_EXPORTED:
        if raw.get(name) not in (None, False):
            raise BadQuery(f"'{name}' does not apply to an export, which streams plain rows")
    limit = raw.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BadQuery("'limit' must be a non-negative integer")
    read = _read(spec, {k: v for k, v in raw.items() if k != "limit"}, config)
    fingerprint = cursor.fingerprint(spec.name, raw.get("where"), read.order)
    return _with(_resumed(read, raw, key, fingerprint, config), limit=limit)


def _object(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadQuery("the query must be a JSON object")
    unknown = [k for k in raw if k not in QUERY_KEYS + PAGE_KEYS]
    if unknown:
        raise BadQuery(f"unknown query key {unknown[0]!r}; known: {', '.join(QUERY_KEYS + PAGE_KEYS)}",
                       key=unknown[0])
    return raw


def _with(read: Read, **changes) -> Read:
    return replace(read, **changes)


def _read(spec: TableSpec, raw: dict, config: Config, default_limit: int | None = None) -> Read:
    return Read(
        table=spec,
        columns=select(spec, raw.get("select")),
        where=where(spec, raw.get("where"), config),
        order=orderby(spec, raw.get("orderby")),
        limit=_non_negative_int(raw.get("limit", config.default_limit if default_limit is None else default_limit),
                                "limit", config.max_limit),
        offset=_non_negative_int(raw.get("offset", 0), "offset", MAX_OFFSET),
        count=_boolean(raw.get("count", False), "count"),
    )


def _resumed(read: Read, raw: dict, key: bytes, fingerprint: str, config: Config) -> Read:
    if raw.get("after") is None:
        return read
    if "offset" in raw:
        raise BadQuery("'after' and 'offset' do not mix: the cursor already says where the page starts")
    values = cursor.decode(key, raw["after"], fingerprint, read.order, config)
    return _with(read, after=tuple(values))


# -- where ---------------------------------------------------------------------------------

def where(spec: TableSpec, raw: Any, config: Config, depth: int = 0) -> Condition | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadQuery("'where' must be a JSON object")
    if depth > config.max_where_depth:
        raise BadQuery(f"'where' nests deeper than {config.max_where_depth} levels")
    parts: list[Condition] = []
    for key, value in raw.items():
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise BadQuery(f"'{key}' takes a non-empty list of conditions")
            items = tuple(where(spec, item, config, depth + 1) or AllOf(()) for item in value)
            parts.append(AllOf(items) if key == "and" else AnyOf(items))
        elif key == "not":
            if not isinstance(value, dict) or not value:
                raise BadQuery("'not' takes a non-empty object of conditions")
            parts.append(Not(where(spec, value, config, depth + 1)))
        else:
            parts.append(_column_condition(spec.column(key), value, config))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _column_condition(col: ColumnSpec, condition: Any, config: Config) -> Condition:
    if not isinstance(condition, dict):
        if isinstance(condition, list):
            raise BadValue(f"column '{col.name}' compares to a list only through 'in' or 'nin'",
                           column=col.name)
        return Compare(col, "eq", _scalar(col, condition))
    if not condition:
        raise BadQuery(f"the condition on '{col.name}' has no operator")
    parts = []
    for name, value in condition.items():
        op = OPERATORS.get(name) if isinstance(name, str) else None
        if op is None:
            raise UnknownOperator(f"unknown operator {name!r} on '{col.name}'; known: {', '.join(OPERATORS)}",
                                  operator=str(name), column=col.name)
        parts.append(Compare(col, op.name, _operand(op, col, value, config)))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _operand(op, col: ColumnSpec, value: Any, config: Config) -> Any:
    if op.accepts == "value":
        # Only eq and ne give null a meaning (IS NULL / IS NOT NULL); lt/gt/... null is a 400, not a 500.
        return _scalar(col, value, allow_null=op.name in ("eq", "ne"))
    if op.accepts == "list":
        if not isinstance(value, list):
            raise BadValue(f"'{op.name}' on '{col.name}' takes a list", column=col.name)
        if len(value) > config.max_in_length:
            raise BadQuery(f"'{op.name}' lists at most {config.max_in_length} values", column=col.name)
        return [_scalar(col, item, allow_null=False) for item in value]
    if op.accepts == "pair":
        if not isinstance(value, list) or len(value) != 2:
            raise BadValue(f"'between' on '{col.name}' takes a list of two values", column=col.name)
        return [_scalar(col, item, allow_null=False) for item in value]
    if op.accepts in ("structure", "range", "regex", "search"):
        return check_operand(op, col, value)
    if op.accepts == "pattern":
        if col.kind != "string" or not isinstance(value, str):
            raise BadValue(f"'{op.name}' on '{col.name}' needs a text column and a string pattern",
                           column=col.name)
        return value
    if not (value is None or isinstance(value, bool)):
        raise BadValue(f"'is' on '{col.name}' takes null, true or false", column=col.name)
    if value is not None and col.kind != "boolean":
        raise BadValue(f"'is' on '{col.name}' takes null here: true and false need a boolean column",
                       column=col.name)
    return value


def _scalar(col: ColumnSpec, value: Any, allow_null: bool = True) -> Any:
    if value is None and allow_null:
        return None
    if isinstance(value, (dict, list)) or value is None:
        raise BadValue(f"column '{col.name}' compares to a single value here", column=col.name)
    return col.coerce(value)


# -- orderby, select, paging -------------------------------------------------------------------

def orderby(spec: TableSpec, raw: Any) -> tuple[OrderTerm, ...]:
    """The ordering, ended by the primary key, so pages never repeat or skip a row."""
    if raw is None or raw == "":
        texts = []
    elif isinstance(raw, str):
        texts = raw.split(",")
    elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
        texts = [part for t in raw for part in t.split(",")]
    else:
        raise BadQuery("'orderby' must be a string like \"email desc, name\" or a list of such strings")
    terms = [_order_term(spec, text) for text in texts]
    named = {t.column.name for t in terms}
    terms += [OrderTerm(col) for col in spec.primary_key if col.name not in named]
    return tuple(terms)


def _order_term(spec: TableSpec, text: str) -> OrderTerm:
    match = _ORDER_TERM.match(text)
    if not match:
        raise BadQuery(f"cannot read the ordering {text.strip()!r}; write \"column [asc|desc] [nulls first|last]\"")
    name, direction, nulls = match.groups()
    return OrderTerm(spec.column(_unquote(name)), (direction or "asc").lower() == "desc",
                     nulls.lower() if nulls else None)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def select(spec: TableSpec, selected: Any) -> tuple[ColumnSpec, ...]:
    return spec.readable if selected is None else columns(spec, selected, "select")


def columns(spec: TableSpec, names: Any, key: str) -> tuple[ColumnSpec, ...]:
    """A list of readable column names (or "a, b"), checked and without repeats."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    if not isinstance(names, list) or not names:
        raise BadQuery(f"'{key}' must be a non-empty list of column names")
    chosen = {}
    for name in names:
        col = spec.column(name)
        chosen[col.name] = col
    return tuple(chosen.values())


def _non_negative_int(value: Any, name: str, maximum: int | None = None) -> int:
    # The JSON parser reads an integer past 64 bits as a float: too large all the same.
    too_large = isinstance(value, float) and maximum is not None and value > maximum
    if not too_large and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise BadQuery(f"'{name}' must be a non-negative integer, got {json.dumps(value)[:40]}")
    if maximum is not None and value > maximum:
        raise BadQuery(f"'{name}' is at most {maximum}, got {value}")
    return value


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadQuery(f"'{name}' must be true or false")
    return value


# -- include ----------------------------------------------------------------------------------

def includes(view: Registry, spec: TableSpec, raw: Any, config: Config) -> tuple[Include, ...]:
    """``"include": ["items"]`` or ``{"items": {"where": ..., "orderby": ..., "select": ..., "limit": 5}}``."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [name.strip() for name in raw.split(",") if name.strip()]
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise BadQuery("'include' takes a list of relationship names or an object of name -> options")
    return tuple(_include(view, spec, name, options, config) for name, options in raw.items())


def _include(view: Registry, spec: TableSpec, name: str, options: Any, config: Config) -> Include:
    relation = spec.relations.get(name)
    if relation is None:  # ``view`` holds the tables the caller may see: name no others
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
        raise BadQuery(f"'{name}' is one related row: 'limit' and 'offset' apply to one-to-many includes only")
    target = view.get(relation.target)
    read = _read(target, {**options, "limit": options.get("limit", 0)}, config)
    return Include(relation, _with(read, limit=read.limit if "limit" in options else None))


# -- grouped reads ------------------------------------------------------------------------------

def _grouped(spec: TableSpec, raw: dict, config: Config) -> Read:
    for key in ("after", "include"):
        if raw.get(key) is not None:
            raise BadQuery(f"'{key}' does not apply to grouped or distinct queries")
    distinct = raw.get("distinct", False)
    if not isinstance(distinct, bool):
        raise BadQuery("'distinct' must be true or false")
    group = [] if raw.get("group") is None else list(columns(spec, raw["group"], "group"))
    functions = _functions(spec, raw.get("aggregate"), group)
    if distinct and (group or functions):
        raise BadQuery("'distinct' selects unique rows; a grouped query's rows are already unique")
    if not distinct and "select" in raw:
        raise BadQuery("a grouped query returns its group columns and aggregates: leave out 'select'")
    if raw.get("having") is not None and distinct:
        raise BadQuery("'having' filters groups: use 'where' with 'distinct'")
    base = _read(spec, {k: v for k, v in raw.items() if k not in ("orderby",) + AGGREGATE_KEYS}, config)
    keys = list(base.columns) if distinct else group
    outputs = {c.name: c for c in keys}
    outputs.update({fn.alias: aggregate.output_spec(fn.alias, aggregate.result_kind(fn.name, fn.column))
                    for fn in functions})
    grouped = TableSpec(name=spec.name, table=spec.table, columns=outputs, primary_key=tuple(keys))
    plan = Aggregate(tuple(group), tuple(functions), distinct, outputs, where(grouped, raw.get("having"), config))
    return _with(base, aggregate=plan, order=orderby(grouped, raw.get("orderby")))


def _functions(spec: TableSpec, raw: Any, group: list[ColumnSpec]) -> list[Function]:
    """``{"n": "count", "avg_year": "avg:year"}`` -> the aggregate functions."""
    if raw is None:
        return []
    if not isinstance(raw, dict) or not raw:
        raise BadQuery("'aggregate' must be an object of name -> \"count\" or \"function:column\"")
    taken = {c.name for c in group}
    found = []
    for alias, text in raw.items():
        if not _ALIAS.match(alias) or alias in taken:
            raise BadQuery(f"aggregate name {alias[:40]!r} must be a new identifier (letters, digits, _)")
        found.append(_function(spec, alias, text))
    return found


def _function(spec: TableSpec, alias: str, text: Any) -> Function:
    name, _, column = text.partition(":") if isinstance(text, str) else ("", "", "")
    if name not in aggregate.FUNCTIONS:
        raise BadQuery(f"aggregate '{alias}' must be \"count\" or \"function:column\" with function one of "
                       f"{', '.join(aggregate.FUNCTIONS)}")
    needs_column, numeric, _kind = aggregate.FUNCTIONS[name]
    if not column:
        if needs_column:
            raise BadQuery(f"aggregate '{alias}': {name} needs a column, e.g. \"{name}:year\"")
        return Function(alias, name)
    col = spec.column(column)
    if numeric and col.kind not in aggregate.NUMERIC:
        raise BadQuery(f"aggregate '{alias}': {name} needs a numeric column, '{col.name}' is {col.kind}")
    return Function(alias, name, col)


# -- the same query from a URL -----------------------------------------------------------------

def query_from_args(args: Mapping[str, str]) -> dict:
    """``?where=<json>&orderby=...&select=a,b&limit=..&offset=..&count=true`` -> a query object."""
    query: dict[str, Any] = {}
    for key, raw in args.items():
        if key not in QUERY_KEYS + PAGE_KEYS:
            raise BadQuery(f"unknown query parameter {key!r}; known: {', '.join(QUERY_KEYS + PAGE_KEYS)}", key=key)
        if key in ("where", "having", "aggregate"):
            try:
                # orjson caps nesting; json.loads would raise RecursionError (a 500) on "[[[[...".
                query[key] = jsonio.loads(raw)
            except BadJson:
                raise BadJson(f"the '{key}' parameter is not valid JSON") from None
        elif key in ("limit", "offset"):
            if not re.fullmatch(r"\d{1,50}", raw):  # beyond any bound, and int() of it stays cheap
                raise BadQuery(f"'{key}' must be a non-negative integer, got {raw[:40]!r}")
            query[key] = int(raw)
        elif key in ("count", "distinct"):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise BadQuery(f"'{key}' must be true or false")
            query[key] = raw.lower() in ("true", "1")
        else:
            query[key] = raw
    return query
