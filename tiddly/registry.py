"""Which tables are exposed and how: column policy, value checking, row <-> JSON.

Every name that arrives in a request is looked up here before it can reach SQL;
every value is checked against its column's type here before any SQL runs.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import json
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Column,
    SmallInteger,
    Table,
    UniqueConstraint,
    and_,
    tuple_,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.dialects.postgresql.ranges import AbstractRange

from tiddly.errors import (
    BadValue,
    MissingColumn,
    ReadOnlyColumn,
    UnknownColumn,
    UnknownTable,
)
from tiddly.passwords import hash_password


class Policy(str, enum.Enum):
    NORMAL = "normal"
    HIDDEN = "hidden"                        # never returned, never usable in a query
    READ_ONLY = "read_only"                  # returned, never written by a client
    WRITE_ONLY_HASHED = "write_only_hashed"  # written (hashed on the way in), never returned


_INT_BITS = ((BigInteger, 64), (SmallInteger, 16))
_ALL_WRITES = frozenset({"insert", "update", "delete"})
# What each writing verb asks of the database: PUT creates the row or changes it.
_WRITE_VERBS = (("POST", {"insert"}), ("PUT", {"insert", "update"}), ("PATCH", {"update"}),
                ("DELETE", {"delete"}))
_KINDS = {bool: "boolean", int: "integer", float: "number", decimal.Decimal: "decimal", str: "string",
          dt.datetime: "datetime", dt.date: "date", dt.time: "time", bytes: "binary",
          dict: "json", list: "json"}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    column: Column
    policy: Policy
    kind: str
    nullable: bool
    required: bool
    max_length: int | None = None  # the longest string accepted: the column's own length, or the server's cap
    length_declared: bool = True   # False: max_length is the server's max_string_length, not the column's
    int_bits: int = 32  # the range an integer column accepts: -2**(bits-1) .. 2**(bits-1)-1

    @property
    def int_range(self) -> tuple[int, int]:
        return -(2 ** (self.int_bits - 1)), 2 ** (self.int_bits - 1) - 1

    @property
    def holds(self) -> str | None:
        """What a column of a structured type holds (see ``holds``)."""
        return holds(self.column.type)

    @property
    def readable(self) -> bool:
        return self.policy in (Policy.NORMAL, Policy.READ_ONLY)

    @property
    def writable(self) -> bool:
        return self.policy in (Policy.NORMAL, Policy.WRITE_ONLY_HASHED)

    def coerce(self, value: Any) -> Any:
        """Check one JSON value against this column's type and return the Python value."""
        if value is None:
            if not self.nullable:
                raise BadValue(f"column '{self.name}' cannot be null", column=self.name)
            return None
        try:
            return _COERCERS[self.kind](self, value)
        except (TypeError, ValueError, OverflowError, ArithmeticError, binascii.Error):
            # A secret (write-only) value is never echoed back, not even in an error.
            got = "another value" if self.policy is Policy.WRITE_ONLY_HASHED else _short(value)
            raise BadValue(f"column '{self.name}' expects {_describe(self)}, got {got}",
                           column=self.name) from None

    def parse_text(self, text: str) -> Any:
        """The JSON value a piece of text stands for (a path key, a CSV field, a PostgREST
        filter value), to be checked by ``coerce`` like any other. Text that does not parse
        stays text, so the check's error names the column and the value."""
        parse = _TEXT_PARSERS.get(self.kind)
        if parse is None:
            return text
        try:
            return parse(text)
        except (ValueError, KeyError):
            return text

    def to_stored(self, value: Any) -> Any:
        """The value as written: coerced, and hashed where the policy says so."""
        value = self.coerce(value)
        if self.policy is Policy.WRITE_ONLY_HASHED and value is not None:
            return hash_password(value)
        return value


_EXACT_FLOAT = 2**53  # past it a float has lost digits: JSON's integers beyond 64 bits arrive as such floats


def holds(column_type) -> str | None:
    """What a value of a structured type holds: "range" (a PostgreSQL range or multirange, read
    as its text), "array" (a PostgreSQL array), "json" (JSON, jsonb, MariaDB's and SQLite's JSON)
    or "tsvector" (PostgreSQL's text search document); None for a plain value."""
    column_type = getattr(column_type, "database_type", column_type)  # schema.DatabaseText reads it as text
    if isinstance(column_type, AbstractRange):
        return "range"
    if isinstance(column_type, ARRAY):
        return "array"
    if isinstance(column_type, JSON):
        return "json"
    if isinstance(column_type, TSVECTOR):
        return "tsvector"
    return None


def _coerce_int(spec: ColumnSpec, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    if isinstance(value, float) and (not value.is_integer() or abs(value) >= _EXACT_FLOAT):
        raise ValueError
    low, high = spec.int_range
    if not low <= value <= high:
        raise OverflowError
    return int(value)


def _coerce_number(_spec, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError
    return float(value)


def _coerce_decimal(_spec, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError
    result = decimal.Decimal(str(value))
    if not result.is_finite():
        raise ValueError
    return result


def _coerce_string(spec: ColumnSpec, value):
    if not isinstance(value, str) or "\x00" in value:
        raise TypeError
    if spec.max_length is not None and len(value) > spec.max_length:
        raise ValueError
    return value


def _coerce_boolean(_spec, value):
    if not isinstance(value, bool):
        raise TypeError
    return value


def _parser(cls):
    def coerce(_spec, value):
        if not isinstance(value, str):
            raise TypeError
        return cls.fromisoformat(value)
    return coerce


def _coerce_datetime(spec: ColumnSpec, value):
    parsed = _parser(dt.datetime)(spec, value)
    if parsed.tzinfo is not None:
        try:  # a UTC column stores it converted, and 0001-01-01T00:00+01:00 has no UTC date-time
            parsed.astimezone(dt.timezone.utc)
        except OverflowError:
            raise BadValue(f"column '{spec.name}' expects a date-time whose UTC time falls in the years "
                           f"1 to 9999, got {_short(value)}", column=spec.name) from None
    return parsed


def _coerce_binary(_spec, value):
    if not isinstance(value, str):
        raise TypeError
    return base64.b64decode(value, validate=True)


_COERCERS = {
    "integer": _coerce_int, "number": _coerce_number, "decimal": _coerce_decimal,
    "string": _coerce_string, "boolean": _coerce_boolean, "binary": _coerce_binary,
    "datetime": _coerce_datetime, "date": _parser(dt.date), "time": _parser(dt.time),
    "json": lambda _spec, value: value,
}

_BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False, "t": True, "f": False}
_TEXT_PARSERS = {
    "integer": int, "number": float, "json": json.loads,
    "boolean": lambda text: _BOOLEAN_TEXT[text.lower()],
}

_DESCRIPTIONS = {
    "integer": "an integer", "number": "a number", "decimal": "a number or numeric string",
    "string": "a string", "boolean": "true or false", "binary": "a base64 string",
    "datetime": "an ISO 8601 date-time string", "date": "an ISO 8601 date string",
    "time": "an ISO 8601 time string", "json": "any JSON value",
}


def _describe(spec: ColumnSpec) -> str:
    text = _DESCRIPTIONS[spec.kind]
    if spec.kind == "integer":
        low, high = spec.int_range
        text += f" from {low} to {high}"
    elif spec.kind == "string" and spec.max_length is not None:
        text += f" of at most {spec.max_length} characters"
    return text


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Junction:
    """The table a many-to-many relation goes through: ``source`` joins (parent column, its
    column), ``target`` (its column, related table's column); ``constraints`` names its two
    foreign keys (to the parent, to the related table)."""
    table: Table
    source: tuple[tuple[str, str], ...]
    target: tuple[tuple[str, str], ...]
    constraints: tuple[str, str]

    @property
    def name(self) -> str:
        return self.table.name


@dataclass(frozen=True)
class RelationSpec:
    """A relationship: a foreign key, or one declared on a mapped class. ``pairs`` join
    (local column, target column); ``hints`` are the names that say which foreign key it
    follows (its columns, and its constraint's name when the schema knows it).
    A link (``TableSpec.links``) also says its foreign key's ``constraint`` name, whether it
    is ``one_to_one`` (the referencing columns are unique) and, for a many-to-many link, the
    ``junction`` it goes through (``pairs`` then join the parent to the junction)."""
    name: str
    target: str
    many: bool
    pairs: tuple[tuple[str, str], ...]
    hints: frozenset[str] = frozenset()
    constraint: str | None = None
    one_to_one: bool = False
    junction: Junction | None = None

    @property
    def cardinality(self) -> str:
        if self.junction is not None:
            return "many-to-many"
        if self.one_to_one:
            return "one-to-one"
        return "one-to-many" if self.many else "many-to-one"


@dataclass(frozen=True, eq=False)
class TableSpec:
    """One exposed table. Never changed once built: a registry (or a view of one) that needs
    other relations holds other TableSpecs (``dataclasses.replace``)."""
    name: str
    table: Table
    columns: dict[str, ColumnSpec]
    primary_key: tuple[ColumnSpec, ...]
    read_only: bool = False
    relations: dict[str, RelationSpec] = field(default_factory=dict)
    links: tuple[RelationSpec, ...] = ()  # every foreign key path to an exposed table, see foreign_key_links
    readable: tuple[ColumnSpec, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "readable", tuple(c for c in self.columns.values() if c.readable))

    def seeing(self, names) -> "TableSpec":
        """This table as a key limited to the tables ``names`` sees it: its relations and links
        lead only to those tables (through a junction among them)."""
        return replace(self, relations={key: relation for key, relation in self.relations.items()
                                        if relation.target in names},
                       links=tuple(link for link in self.links if link.target in names and (
                           link.junction is None or link.junction.name in names)))

    # -- names -------------------------------------------------------------
    def column(self, name: Any, purpose: str = "read") -> ColumnSpec:
        """The readable (or writable) column called ``name``, or a 400 naming it (a hidden
        column is answered as one that does not exist, whatever the purpose)."""
        spec = self.columns.get(name) if isinstance(name, str) else None
        if spec is None or spec.policy is Policy.HIDDEN or (purpose == "read" and not spec.readable):
            raise UnknownColumn(f"table '{self.name}' has no column {_short(name)}",
                                column=name if isinstance(name, str) else None, table=self.name)
        if purpose == "write" and not spec.writable:
            raise ReadOnlyColumn(f"column '{name}' of table '{self.name}' cannot be written", column=name)
        return spec

    @property
    def verbs(self) -> list[str]:
        reads = ["GET", "FETCH", "QUERY"]
        if self.read_only or not self.primary_key:
            return reads
        # A view says which writes its database takes; a table takes them all.
        writes = self.table.info.get("writes", _ALL_WRITES)
        return reads + [verb for verb, needs in _WRITE_VERBS if needs <= writes]

    # -- primary keys ------------------------------------------------------
    def pk_from_path(self, raw: str) -> tuple:
        parts = raw.split(",") if len(self.primary_key) > 1 else [raw]
        if len(parts) != len(self.primary_key):
            raise BadValue(f"table '{self.name}' has a primary key of {len(self.primary_key)} columns")
        return tuple(col.coerce(col.parse_text(part)) for col, part in zip(self.primary_key, parts))

    def pk_from_body(self, obj: dict) -> tuple | None:
        if not all(col.name in obj for col in self.primary_key):
            return None
        return tuple(col.coerce(obj[col.name]) for col in self.primary_key)

    def pk_json(self, values: Iterable) -> Any:
        values = tuple(values)
        return values[0] if len(values) == 1 else list(values)

    def pk_clause(self, pk: tuple):
        return and_(*(col.column == value for col, value in zip(self.primary_key, pk)))

    def pk_in(self, keys: list[tuple]):
        """The rows with one of these primary keys."""
        if len(self.primary_key) == 1:
            return self.primary_key[0].column.in_([key[0] for key in keys])
        return tuple_(*(c.column for c in self.primary_key)).in_(keys)

    # -- bodies ------------------------------------------------------------
    def values_for_write(self, obj: Any, *, insert: bool, allow_pk: bool = False) -> dict[str, Any]:
        """Check a JSON object's names and values for an insert or update."""
        if not isinstance(obj, dict):
            raise BadValue(f"a row for table '{self.name}' must be a JSON object")
        pk_names = {c.name for c in self.primary_key}
        values = {}
        for name, raw in obj.items():
            if allow_pk and name in pk_names:
                spec = self.columns[name]
            else:
                spec = self.column(name, purpose="write")
            values[name] = spec.to_stored(raw)
        if insert:
            self.check_required(values)
        return values

    def check_required(self, values: dict) -> None:
        """A 400 naming the first required column (NOT NULL, no default) that ``values`` leave out."""
        missing = [c.name for c in self.columns.values() if c.required and c.name not in values]
        if missing:
            raise MissingColumn(f"column '{missing[0]}' of table '{self.name}' is required", column=missing[0])

    def with_string_limit(self, max_length: int) -> "TableSpec":
        columns = {name: replace(c, max_length=max_length, length_declared=False)
                   if c.kind == "string" and c.max_length is None else c for name, c in self.columns.items()}
        return replace(self, columns=columns, primary_key=tuple(columns[c.name] for c in self.primary_key))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "primary_key": [c.name for c in self.primary_key],
            "verbs": self.verbs,
            "columns": [
                {"name": c.name, "type": c.kind, "nullable": c.nullable, "required": c.required,
                 "policy": c.policy.value, **_length(c)}
                for c in self.columns.values() if c.policy is not Policy.HIDDEN
            ],
        }


def _length(col: ColumnSpec) -> dict:
    """What the database declares (max_length) or, apart, the server's cap on a column that declares none."""
    if not col.max_length:
        return {}
    return {"max_length" if col.length_declared else "max_string_length": col.max_length}


# -- building specs from SQLAlchemy tables -------------------------------------

def column_spec(column: Column) -> ColumnSpec:
    auto_pk = column.table.autoincrement_column is column
    declared = column.info.get("policy")
    policy = Policy(declared) if declared else (Policy.READ_ONLY if auto_pk else Policy.NORMAL)
    has_default = (column.default is not None or column.server_default is not None
                   or bool(column.info.get("database_default")))  # a view's column, from its table
    # A key is never null, though SQLite reports its keys (INTEGER PRIMARY KEY too) nullable.
    nullable = bool(column.nullable) and not column.primary_key
    return ColumnSpec(
        name=column.name, column=column, policy=policy, kind=_kind(column),
        nullable=nullable,
        required=not nullable and not has_default and not auto_pk,
        max_length=getattr(column.type, "length", None),
        int_bits=_int_bits(column, auto_pk),
    )


def _int_bits(column: Column, auto_pk: bool) -> int:
    # A generated key is the database's to choose: SQLite's rowid is 64-bit
    # whatever the declared type, so its keys must stay addressable.
    if auto_pk:
        return 64
    return next((bits for kind, bits in _INT_BITS if isinstance(column.type, kind)), 32)


def _kind(column: Column) -> str:
    if isinstance(column.type, JSON):  # its python_type is object: any JSON value
        return "json"
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return "string"
    return _KINDS.get(python_type, "string")


def table_spec(table: Table, read_only: bool = False) -> TableSpec:
    columns = {c.name: column_spec(c) for c in table.columns}
    primary_key = tuple(columns[c.name] for c in table.primary_key.columns)
    return TableSpec(name=table.name, table=table, columns=columns, primary_key=primary_key,
                     read_only=read_only or bool(table.info.get("read_only")))


def _readable_join(spec: TableSpec, target: TableSpec, pairs) -> bool:
    """Both ends of a join are readable columns: a relation on a hidden or write-only column
    would reveal it through the rows it pairs, so no door (include, nested insert, an embed)
    may follow one."""
    return all(_readable(spec, local) and _readable(target, remote) for local, remote in pairs)


def _readable(spec: TableSpec, name: str) -> bool:
    column = spec.columns.get(name)
    return column is not None and column.readable


def foreign_key_relations(specs: dict[str, TableSpec]) -> dict[str, dict[str, RelationSpec]]:
    """The relations every foreign key between exposed tables gives, both ways, named as
    PostgREST names them: after the other table (``items`` -> ``stores`` is one store,
    ``stores`` -> ``items`` many items). Works for reflected tables, which have no mappers.
    A view that shows a foreign key's columns unchanged has that key's relations too (as
    PostgREST infers them). When two tables are joined by several foreign keys, the name alone
    would not say which is meant: each is named ``<table>!<its foreign key column(s)>`` instead
    (PostgREST's hint). A table that refers to itself, and a name a column already has, get none."""
    found: dict[tuple[str, str], list[RelationSpec]] = {}
    for spec, target, pairs, fk in _foreign_keys(specs):
        if target is spec or not _readable_join(spec, target, pairs):
            continue
        fk_name = fk.name
        hints = frozenset({",".join(local for local, _ in pairs), *([fk_name] if fk_name else [])})
        found.setdefault((spec.name, target.name), []).append(
            RelationSpec(target.name, target.name, False, pairs, hints))
        found.setdefault((target.name, spec.name), []).append(
            RelationSpec(spec.name, spec.name, True, tuple((remote, local) for local, remote in pairs), hints))
    relations: dict[str, dict[str, RelationSpec]] = {}
    for (source, name), candidates in found.items():
        if name in specs[source].columns:
            continue
        for relation in candidates:
            if len(candidates) > 1:
                key = ",".join(local if not relation.many else remote for local, remote in relation.pairs)
                relation = replace(relation, name=f"{name}!{key}")
            relations.setdefault(source, {})[relation.name] = relation
    return relations


def foreign_key_links(specs: dict[str, TableSpec]) -> dict[str, list[RelationSpec]]:
    """Every way from one exposed table to another along foreign keys, as PostgREST finds them
    (its dialect resolves embeds over these): each foreign key both ways, a table's reference
    to itself included, each link named after the table it leads to and carrying the key's
    constraint name (PostgreSQL's default, ``<table>_<columns>_fkey``, when the database has
    none, as SQLite's unnamed keys); ``one_to_one`` when the referencing columns are unique; and
    many-to-many through a table whose primary key holds two foreign keys. Only joins of
    readable columns (see ``_readable_join``), in the order of their constraint names."""
    links: dict[str, list[RelationSpec]] = {}
    to_one: dict[str, list[RelationSpec]] = {}
    for spec, target, pairs, fk in _foreign_keys(specs):
        if not _readable_join(spec, target, pairs):
            continue
        constraint = fk.name or f"{fk.table.name}_{'_'.join(fk.column_keys)}_fkey"
        unique = _unique(spec.table, {local for local, _ in pairs})
        forward = RelationSpec(target.name, target.name, False, pairs, constraint=constraint, one_to_one=unique)
        links.setdefault(spec.name, []).append(forward)
        to_one.setdefault(spec.name, []).append(forward)
        links.setdefault(target.name, []).append(RelationSpec(
            spec.name, spec.name, not unique, tuple((remote, local) for local, remote in pairs),
            constraint=constraint, one_to_one=unique))
    for spec_name, outgoing in to_one.items():
        key = {c.name for c in specs[spec_name].primary_key}
        for first in outgoing:
            for second in outgoing:
                if first.constraint == second.constraint or not {a for a, _ in first.pairs + second.pairs} <= key:
                    continue
                junction = Junction(specs[spec_name].table, tuple((b, a) for a, b in first.pairs), second.pairs,
                                    (first.constraint, second.constraint))
                links.setdefault(first.target, []).append(RelationSpec(
                    second.target, second.target, True, junction.source, junction=junction))
    return {name: sorted(found, key=lambda r: (r.constraint or "", r.junction is not None))
            for name, found in links.items()}


def _unique(table: Table, columns: set[str]) -> bool:
    """Whether ``columns`` are the table's primary key or one of its unique keys."""
    if columns == {c.name for c in table.primary_key.columns}:
        return True
    keys = [con.columns for con in table.constraints if isinstance(con, UniqueConstraint)]
    keys += [index.columns for index in table.indexes if index.unique]
    return any(columns == {c.name for c in key} for key in keys)


def _foreign_keys(specs: dict[str, TableSpec]):
    """(exposed source, exposed target, (local, remote) column pairs, constraint) for every
    foreign key of the database's tables, once between the tables themselves and once more for
    each exposed view that shows all of its columns on one side or both."""
    shown_by: dict[Table, list[tuple[TableSpec, dict[str, str]]]] = {}
    for spec in specs.values():
        shown_by.setdefault(spec.table, []).append((spec, {c: c for c in spec.table.columns.keys()}))
        for name, (table, column) in spec.table.info.get("origins", {}).items():
            views = shown_by.setdefault(table, [])
            if not views or views[-1][0] is not spec:
                views.append((spec, {}))
            views[-1][1].setdefault(column, name)
    tables = dict.fromkeys(table for spec in specs.values() for table in spec.table.metadata.tables.values())
    for table in (table for table in tables if table in shown_by):
        for fk in sorted(table.foreign_key_constraints, key=lambda fk: (fk.name or "", *fk.column_keys)):
            columns = [(element.parent.name, element.column.name) for element in fk.elements]
            for spec, local in shown_by.get(table, ()):
                for target, remote in shown_by.get(fk.referred_table, ()):
                    if all(a in local for a, _ in columns) and all(b in remote for _, b in columns):
                        yield spec, target, tuple((local[a], remote[b]) for a, b in columns), fk


class Registry:
    """The exposed tables, by name. Built once at start and never written while requests run;
    ``view(tables)`` is the registry as a key limited to some tables sees it (made once per
    distinct set of tables), whose relations lead only to those tables."""

    def __init__(self, specs: Iterable[TableSpec]):
        specs = list(specs)
        by_name = {spec.name: spec for spec in specs}
        derived, links = foreign_key_relations(by_name), foreign_key_links(by_name)
        self.tables = {spec.name: replace(spec, relations={**derived.get(spec.name, {}), **spec.relations},
                                          links=tuple(links.get(spec.name, ())))
                       for spec in specs}
        self._views: dict[frozenset[str], Registry] = {}
        self._views_lock = threading.Lock()

    @classmethod
    def of(cls, tables: dict[str, TableSpec]) -> "Registry":
        """A registry of these specs, by these names, as they are (their relations already chosen)."""
        return cls._of(tables)

    @classmethod
    def _of(cls, tables: dict[str, TableSpec]) -> "Registry":
        """A registry of these specs as they are (their relations already chosen)."""
        registry = cls.__new__(cls)
        registry.tables, registry._views, registry._views_lock = tables, {}, threading.Lock()
        return registry

    def view(self, names: frozenset[str] | None) -> "Registry":
        """The tables called ``names`` (None: all), with only the relations among them."""
        if names is None:
            return self
        with self._views_lock:
            found = self._views.get(names)
            if found is None:
                found = self._views[names] = Registry._of({
                    name: spec.seeing(names) for name, spec in self.tables.items() if name in names})
        return found

    def add_relations(self, mappers: Iterable) -> "Registry":
        """The same tables, whose ``include`` also follows the relationships of these ORM mappers
        (plain foreign keys between exposed tables, on readable columns: see ``_readable_join``),
        under their own names; a mapper's name wins over a derived one."""
        relations = {name: dict(spec.relations) for name, spec in self.tables.items()}
        for mapper in mappers:
            spec = self.tables.get(mapper.local_table.name)
            if spec is None or spec.table is not mapper.local_table:
                continue
            relations[spec.name].update({
                rel.key: RelationSpec(rel.key, rel.mapper.local_table.name, bool(rel.uselist),
                                      tuple((lo.name, re.name) for lo, re in rel.local_remote_pairs))
                for rel in mapper.relationships
                if rel.secondary is None and rel.mapper.local_table.name in self.tables
                and _readable_join(spec, self.tables[rel.mapper.local_table.name],
                                   [(lo.name, re.name) for lo, re in rel.local_remote_pairs])
            })
        return Registry._of({name: replace(spec, relations=relations[name]) for name, spec in self.tables.items()})

    @classmethod
    def from_metadata(cls, metadata, names: Iterable[str] | None = None) -> "Registry":
        """The tables of ``metadata`` (or those in ``names``), except internal ones
        (``info={"internal": True}``: API keys, login tokens, ...) that no request may reach."""
        chosen = set(names) if names is not None else None
        return cls(table_spec(t) for t in metadata.sorted_tables
                   if (chosen is None or t.name in chosen) and not t.name.startswith("-")
                   and not t.info.get("internal"))

    def with_string_limit(self, max_length: int) -> "Registry":
        """The same tables, with text columns that declare no length (Text) capped at ``max_length``."""
        return Registry._of({name: spec.with_string_limit(max_length) for name, spec in self.tables.items()})

    def get(self, name: str) -> TableSpec:
        spec = self.tables.get(name)
        if spec is None:
            raise UnknownTable(f"no table named {_short(name)} is exposed", table=name)
        return spec

    def describe(self) -> list[dict]:
        return [{**spec.describe(), "relations": self._relations(spec)} for spec in self.tables.values()]

    def _relations(self, spec: TableSpec) -> list[dict]:
        """The relations a client may follow, to exposed tables, each join once: under the name
        its mapped class gives it when it has one (``store``), else the table's (``stores``)."""
        joins: dict[tuple, RelationSpec] = {}
        for relation in spec.relations.values():
            if relation.target not in self.tables:
                continue
            key = (relation.target, relation.pairs)
            if key not in joins or (joins[key].hints and not relation.hints):  # a derived one has hints
                joins[key] = relation
        return [{"name": r.name, "table": r.target, "many": r.many,
                 "columns": [local for local, _ in r.pairs], "references": [remote for _, remote in r.pairs]}
                for r in joins.values()]
