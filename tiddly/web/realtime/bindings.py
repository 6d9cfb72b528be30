"""A channel's ``postgres_changes`` bindings: read from its join, checked against what the caller
may see, and each change the feed hands over made into the message realtime-js expects.

A binding is what ``.on('postgres_changes', {event, schema, table, filter}, handler)`` sends:
``event`` ``*``, ``INSERT``, ``UPDATE`` or ``DELETE``; ``schema`` ``public`` (the one schema
Tiddly's PostgREST dialect names); ``table`` one the caller may read (none, or ``*``: every
table it may read); ``filter`` Supabase's ``column=op.value`` with ``eq``, ``neq``, ``lt``,
``lte``, ``gt``, ``gte`` or ``in`` (``id=in.(1,2,3)``), or ``like``, ``ilike``, ``is``,
``isdistinct``, any of them after ``not.``, several joined by commas all holding (what
realtime-js's filter builder writes); ``select`` the columns its records hold.
A filter becomes a where of Tiddly's query language (docs/API.md), its values typed by the
column, so every name is checked against the registry and no value reaches SQL as text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiddly import jsonio
from tiddly.config import Config
from tiddly.errors import BadQuery, BadValue, NotFound, Unsupported
from tiddly.registry import ColumnSpec, Registry, TableSpec
from tiddly.services import access
from tiddly.services.auth import Principal
from tiddly.services.plan import Read
from tiddly.web.postgrest import grammar
from tiddly.web.postgrest.grammar import PostgrestError
from tiddly.web.postgrest.asked import SCHEMA

EVENTS = ("*", "INSERT", "UPDATE", "DELETE")
FILTER_OPERATORS = {"eq": "eq", "neq": "ne", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte", "in": "in",
                    "like": "like", "ilike": "ilike", "is": "is", "isdistinct": "isdistinct"}
# match and imatch are not taken: a client's regular expression would run on the event loop.
MAX_BINDINGS = 100  # per channel
# The column types realtime-js converts a record's values by: each is what the value already is
# in JSON, so its conversion changes nothing (a JSON column's text is sent quoted, see _record).
_TYPES = {"boolean": "bool", "number": "float8", "decimal": "numeric", "string": "text", "datetime": "timestamp",
          "date": "date", "time": "time", "binary": "bytea", "json": "jsonb"}


@dataclass(frozen=True)
class Binding:
    id: int
    event: str                  # as the client sent it ("*", "INSERT", "insert", ...)
    tables: tuple[str, ...]     # the table named, or every table the caller may read
    where: dict | None
    select: tuple[str, ...] | None  # the columns its changes' records hold (None: every readable one)
    echo: dict                  # the join reply's entry for it: the client compares it with its own

    def wants(self, op: str) -> bool:
        return self.event == "*" or self.event.upper() == op.upper()


def read(config: Any, view: Registry, principal: Principal, settings: Config, next_id) -> list[Binding]:
    """The bindings of a join's ``config.postgres_changes``, checked: a Tiddly error names the
    first one that is malformed, unknown, or not readable by ``principal``."""
    asked = config.get("postgres_changes") if isinstance(config, dict) else None
    if asked is None:
        asked = []
    if not isinstance(asked, list) or not all(isinstance(b, dict) for b in asked):
        raise BadValue("config.postgres_changes is a list of {event, schema, table, filter}")
    if len(asked) > MAX_BINDINGS:
        raise BadQuery(f"a channel takes at most {MAX_BINDINGS} postgres_changes bindings")
    return [_binding(item, view, principal, settings, next_id()) for item in asked]


def _binding(item: dict, view: Registry, principal: Principal, settings: Config, binding_id: int) -> Binding:
    event, schema, table, text, select = (item.get(k) for k in ("event", "schema", "table", "filter", "select"))
    if not isinstance(event, str) or event.upper() not in EVENTS:
        raise BadValue(f"postgres_changes event is one of {', '.join(EVENTS)}; got {_short(event)}")
    if schema not in (SCHEMA, "*"):
        raise NotFound(f"unknown schema {_short(schema)}: Tiddly's tables are in schema '{SCHEMA}'")
    if table is not None and not isinstance(table, str):
        raise BadValue(f"postgres_changes table is a table's name; got {_short(table)}")
    if text is not None and not isinstance(text, str):
        raise BadValue(f"postgres_changes filter is text such as 'id=eq.1'; got {_short(text)}")
    if table in (None, "*"):
        if text:
            raise BadQuery("a postgres_changes filter needs a table")
        if select is not None:
            raise BadQuery("a postgres_changes select needs a table")
        names, where, chosen = tuple(readable(view, principal, name).name for name in view.tables), None, None
    else:
        spec = readable(view, principal, table)
        names, where = (spec.name,), (filter_where(spec, text, settings) if text else None)
        chosen = _selected(spec, select)
    echo = {"id": binding_id, "event": event, "schema": schema, "table": table, "filter": text}
    if select is not None:
        echo["select"] = select
    return Binding(binding_id, event, names, where, chosen, echo)


def _selected(spec: TableSpec, select: Any) -> tuple[str, ...] | None:
    """A binding's ``select``: readable columns of its table, checked as a read's are."""
    if select is None:
        return None
    if not isinstance(select, list) or not select or len(select) > len(spec.columns):
        raise BadValue(f"postgres_changes select is a list of {spec.name}'s columns; got {_short(select)}")
    return tuple(dict.fromkeys(spec.column(name).name for name in select))


def readable(view: Registry, principal: Principal, name: str) -> TableSpec:
    """The table called ``name``, or the 404 or 403 a read of it would get."""
    spec = access.table(view, principal, name)
    access.decide(Read(spec, spec.readable), principal)
    return spec


# -- filters ---------------------------------------------------------------------------------

def filter_where(spec: TableSpec, text: str, settings: Config) -> dict:
    """``room=eq.12`` (or ``id=in.(1,2)``, ``a=gt.1,b=lt.5``) as a where: ``{"room": {"eq": 12}}``."""
    try:
        parts = [_condition(spec, part, text, settings) for part in grammar.split(text)]
    except PostgrestError as exc:
        raise BadQuery(f"cannot read the filter {_short(text)}: {exc.details or exc.message}") from None
    return parts[0] if len(parts) == 1 else {"and": parts}


def _condition(spec: TableSpec, part: str, whole: str, settings: Config) -> dict:
    name, equals, rest = part.partition("=")
    if not equals or not name.strip():
        raise BadQuery(f"a filter is column=operator.value, e.g. id=eq.1; got {_short(whole)}")
    found = grammar.parse_filter(grammar.unquote(name, "column"), rest, in_logic=True)
    if found.op not in FILTER_OPERATORS or found.modifier is not None:
        raise Unsupported(f"a Realtime filter's operator is one of {', '.join(FILTER_OPERATORS)}; "
                          f"got {_short(rest.partition('.')[0])}")
    col = spec.column(found.column)
    condition = _compared(col, found.op, found.value, settings)
    return {"not": condition} if found.negate else condition


def _compared(col: ColumnSpec, op: str, value: Any, settings: Config) -> dict:
    if op == "in":
        if len(value) > settings.max_in_length:
            raise BadQuery(f"'in' lists at most {settings.max_in_length} values", column=col.name)
        return {col.name: {"in": [_typed(col, item) for item in value]}}
    if op in ("like", "ilike"):
        if col.kind != "string":
            raise BadValue(f"'{op}' on '{col.name}' needs a text column", column=col.name)
        return {col.name: {op: value.replace("*", "%")}}
    if op == "is":  # grammar.IS_VALUES: null, not_null, true, false, unknown
        if value in ("true", "false") and col.kind != "boolean":
            raise BadValue(f"'is' on '{col.name}' takes null here: true and false need a boolean column",
                           column=col.name)
        if value == "not_null":
            return {col.name: {"ne": None}}
        return {col.name: {"is": {"true": True, "false": False}.get(value)}}
    if op == "isdistinct":
        return {"or": [{col.name: {"ne": _typed(col, value)}}, {col.name: {"eq": None}}]}
    return {col.name: {FILTER_OPERATORS[op]: _typed(col, value)}}


def _typed(col: ColumnSpec, text: str) -> Any:
    """The JSON value a filter's text stands for in this column, checked as a written value is."""
    value = col.parse_text(text)
    if value is None or isinstance(value, (dict, list)):
        raise BadValue(f"column '{col.name}' compares to a single value here", column=col.name)
    col.coerce(value)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- changes as realtime-js receives them ------------------------------------------------------

def columns(spec: TableSpec) -> list[dict]:
    """``columns``: the readable columns with the type realtime-js converts their values by."""
    return [{"name": col.name, "type": _type(col)} for col in spec.readable]


def _type(col: ColumnSpec) -> str:
    if col.kind == "integer":
        return {16: "int2", 64: "int8"}.get(col.int_bits, "int4")
    return _TYPES.get(col.kind, "text")


def change_data(event, spec: TableSpec, select: tuple[str, ...] | None = None) -> dict:
    """A ``postgres_changes`` message's ``data`` (its payload is ``{"ids": [...], "data": ...}``):
    ``record`` is the row after an insert or update (its ``select``ed columns, when the binding
    names some); ``old_record`` the primary key before an update or a delete (what Supabase
    sends for a table without REPLICA IDENTITY FULL)."""
    kind = event.op.upper()
    listed = columns(spec)
    if select is not None:
        listed = [c for c in listed if c["name"] in select]
    data = {"schema": SCHEMA, "table": event.table, "commit_timestamp": event.at, "type": kind,
            "columns": listed, "errors": None}
    if kind != "DELETE":
        row = event.row if select is None else {k: v for k, v in event.row.items() if k in select}
        data["record"] = _record(spec, row)
    if kind != "INSERT":
        data["old_record"] = _record(spec, event.key)
    return data


def _record(spec: TableSpec, row: dict) -> dict:
    # realtime-js JSON.parses a jsonb column's string: a string stored in a JSON column goes
    # quoted, so that it arrives as the same string.
    out = {}
    for name, value in row.items():
        col = spec.columns.get(name)
        if col is None or not col.readable:
            continue
        out[name] = _quoted(value) if col.kind == "json" and isinstance(value, str) else value
    return out


def _quoted(text: str) -> str:
    return jsonio.dumps(text).decode()
