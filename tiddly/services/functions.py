"""Stored functions as operations (DESIGN section 10): the functions a process serves, and a call.

``Catalog`` is what ``storage/functions.py`` reads of a database's catalog, read once (at the
first request that needs it, so the app still starts while its database is down) and kept for
the process's life, like the registry: a function created or changed later is seen after a
restart. It serves a function only when every table or view its signature names (its result's
rows, a row-typed parameter) is one the registry serves: a function over a relation Tiddly does
not expose (its own key tables, a table left out by ``--exclude``) is not callable.

``Call`` is the typed operation: the chosen function, its arguments, and, when it answers rows,
the ``Read`` of them (filters, order, page, embeds) over the call's result as a relation
(``source``). The executor decides who may run it from ``reads`` and ``writes``, like any other
operation: what a function touches is what its signature names (its result's table, its
row-typed parameters); a function whose signature names no table may read (and, when volatile,
write) any table, so it counts as touching all of them. A call writes when the database says it
may: a VOLATILE function on PostgreSQL; on MariaDB, a routine that does not declare ``READS SQL
DATA`` or ``NO SQL``. Every other call runs in a READ ONLY transaction, so the database itself
refuses a write from a function that declared it would not write.

Arguments are bound, never spliced: on PostgreSQL one JSON document, turned into the parameters'
declared types by ``json_to_record`` (an array, a row, a range from its text); on MariaDB one
bound value per parameter. Names in the SQL come from the catalog only, quoted.
"""
from __future__ import annotations

import datetime as dt
import decimal
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    MetaData,
    Numeric,
    Table,
    Text,
    Time,
    cast,
    column,
    func,
    text,
)
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.dialects.postgresql.ranges import AbstractRange
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import Function as Function_
from sqlalchemy.types import UserDefinedType

from tiddly import jsonio
from tiddly.errors import ApiError, BadValue
from tiddly.registry import (
    ColumnSpec,
    Policy,
    Registry,
    RelationSpec,
    TableSpec,
    column_spec,
)
from tiddly.schema import DatabaseText
from tiddly.services import reads
from tiddly.services.plan import Change, Read
from tiddly.storage import translate_error
from tiddly.storage.functions import Function, callable_functions

SOURCE = "pgrst_call"  # the alias of a call's result as a relation
_ARGS = "pgrst_args"


class FunctionFailed(BadValue):
    """The function itself failed (its own RAISE, a value its parameter's type cannot take): a
    400 with the database's SQLSTATE and message, as PostgREST answers it."""

    def __init__(self, message: str, sqlstate: str | None, detail: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.sqlstate, self.detail, self.hint = sqlstate, detail, hint


# -- the catalog ----------------------------------------------------------------------------

class Catalog:
    """The functions the database holds that Tiddly serves, by name (overloads together)."""

    def __init__(self, db, registry: Registry):
        self._db, self._registry = db, registry
        self._lock = threading.Lock()
        self._by_name: dict[str, tuple[Function, ...]] | None = None
        self.schema: str | None = None
        self.dialect_name = db.dialect_name
        self._quote = db.engine.dialect.identifier_preparer.quote

    def overloads(self, name: str) -> tuple[Function, ...]:
        return self._load().get(name, ())

    def names(self) -> list[str]:
        return list(self._load())

    def on_rows_of(self, table: str) -> list[Function]:
        """The functions that take one row of ``table`` as their only parameter (PostgREST's
        computed fields and computed relationships), PostgreSQL only."""
        return [f for overloads in self._load().values() for f in overloads
                if len(f.parameters) == 1 and f.parameters[0].relation == table]

    def qualified(self, function: Function) -> str:
        name = self._quote(function.name)
        return f"{self._quote(self.schema)}.{name}" if self.schema else name

    def quote(self, name: str) -> str:
        return self._quote(name)

    def _load(self) -> dict[str, tuple[Function, ...]]:
        if self._by_name is None:
            with self._lock:
                if self._by_name is None:
                    with self._db.session(latest=True) as session:  # the primary's catalog
                        conn = session.connection()
                        self.schema = _current_schema(conn)
                        found = callable_functions(conn)
                    by_name: dict[str, list[Function]] = {}
                    for function in found:
                        if self._serves(function):
                            by_name.setdefault(function.name, []).append(function)
                    self._by_name = {name: tuple(fs) for name, fs in by_name.items()}
        return self._by_name

    def _serves(self, function: Function) -> bool:
        if function.kind == "procedure" and function.columns:
            return False  # its OUT parameters are session variables: not an answer Tiddly reads
        named = _relations(function)
        return all(name in self._registry.tables for name in named)

    def unreadable(self, function: Function) -> frozenset[str]:
        """The names of the hidden and write-only columns of the tables a call touches: a result
        column of the function's own (RETURNS TABLE, OUT, a procedure's SELECT) by such a name is
        never answered, since Tiddly cannot tell it from that table's column."""
        return frozenset(c.name for name in self.tables(function) for c in self._registry.tables[name].columns.values()
                         if not c.readable)

    def tables(self, function: Function) -> frozenset[str]:
        """The tables a call of ``function`` touches, as far as Tiddly can tell (module doc)."""
        return _relations(function) or frozenset(self._registry.tables)


def _relations(function: Function) -> frozenset[str]:
    named = {p.relation for p in function.parameters if p.relation}
    if function.returns_relation:
        named.add(function.returns_relation)
    return frozenset(named)


def _current_schema(conn) -> str | None:
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT current_schema()")).scalar()
    if conn.dialect.name in ("mysql", "mariadb"):
        return conn.execute(text("SELECT DATABASE()")).scalar()
    return None


def result_kind(function: Function) -> str:
    """What a call answers: "none" (void), "value" (one scalar), "row" (one row), "rows" (a set)."""
    if function.kind == "procedure":
        return "rows"
    if function.returns_set:
        return "rows"
    if function.returns_relation or function.columns or function.returns == "record":
        return "row"
    return "none" if function.returns == "void" else "value"


# -- the operation --------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One call of ``function``. ``arguments``: by parameter name, as JSON values (text from a query
    string); ``raw``: the one positional argument of a function whose single parameter has no name
    (the request's body). ``returning``: the read of the rows it answers over ``source`` (None for a
    value, or a procedure, whose rows are known once it ran: ``plan_rows`` reads them then)."""
    function: Function
    arguments: dict[str, Any]
    tables: frozenset[str]
    returning: Read | None = None
    raw: str | None = None
    plan_rows: Callable[[TableSpec], Read] | None = None
    sql: str | None = None  # the statement that calls it, when no ``returning`` read does
    unreadable: frozenset[str] = frozenset()  # result column names never answered (Catalog.unreadable)
    retryable = True

    @property
    def kind(self) -> str:
        return result_kind(self.function)

    @property
    def writes(self) -> frozenset[str]:
        return self.tables if self.function.writes else frozenset()

    @property
    def reads(self) -> frozenset[str]:
        return self.tables | (self.returning.reads if self.returning is not None else frozenset())


@dataclass
class Called:
    """What a call answered: ``value`` (a scalar), or ``rows`` and their ``count``."""
    kind: str
    value: Any = None
    rows: list[dict] | None = None
    count: int | None = None
    table: TableSpec | None = None  # what the rows were read from
    offset: int = 0
    changes: list[Change] = field(default_factory=list)


# -- computed fields and computed relationships ----------------------------------------------

@dataclass(frozen=True, eq=False)
class ComputedSpec(TableSpec):
    """A table with PostgREST's computed fields: each function of one of its rows that answers a
    value is a column a request may select, filter and order by (never part of ``*``)."""
    computed: dict[str, ColumnSpec] = field(default_factory=dict)

    def column(self, name: Any, purpose: str = "read") -> ColumnSpec:
        found = self.computed.get(name) if purpose == "read" and name not in self.columns else None
        return found if found is not None else super().column(name, purpose)


def with_functions(registry: Registry, catalog: Catalog) -> Registry:
    """The registry with what functions over its tables' rows add (PostgreSQL): computed fields on
    each table, and computed relationships (a function of a row answering rows of a served table)
    as relations to a table of their own, kept under a key with a slash, a name no request path
    can hold (``<function>/<table>``)."""
    if catalog.dialect_name != "postgresql":
        return registry
    tables: dict[str, TableSpec] = {}
    for name, spec in registry.tables.items():
        relations = dict(spec.relations)
        for function in catalog.on_rows_of(name):
            target = registry.tables.get(function.returns_relation or "")
            if target is None or function.name in relations or function.name in spec.columns or not spec.primary_key:
                continue
            key = f"{function.name}/{name}"
            tables[key] = _computed(catalog, registry, _related_rows(catalog, spec, target, function))
            many = function.returns_set and function.rows != 1
            relations[function.name] = RelationSpec(function.name, key, many, tuple(
                (c.name, _PARENT + c.name) for c in spec.primary_key))
        tables[name] = _computed(catalog, registry, replace(spec, relations=relations))
    return Registry.of(tables)


_PARENT = "pgrst_parent_"


def _computed(catalog: Catalog, registry: Registry, spec: TableSpec) -> ComputedSpec:
    """``spec`` with the computed fields of the table its rows are (``spec.name``)."""
    base = registry.tables[spec.name]
    computed = {}
    for function in catalog.on_rows_of(spec.name):
        if function.returns_set or function.returns_relation or function.columns or function.returns == "void":
            continue
        row = func.row(*(spec.columns[c].column for c in base.columns))
        argument = cast(row, _Named(f"{catalog.quote(catalog.schema)}.{catalog.quote(spec.name)}"))
        sqltype = _pg_type(function.returns)
        expression = Function_(function.name, argument, packagenames=(catalog.schema,), type_=sqltype)
        computed[function.name] = ColumnSpec(function.name, expression.label(function.name), Policy.READ_ONLY,
                                             _kind(sqltype), True, False)
    return ComputedSpec(spec.name, spec.table, spec.columns, spec.primary_key, spec.read_only, spec.relations,
                        spec.links, computed=computed)


def _kind(sqltype) -> str:
    """The registry's kind of a value of this type ("integer", "string", ...)."""
    return column_spec(Table("value", MetaData(), Column("value", sqltype)).c.value).kind


def _related_rows(catalog: Catalog, parent: TableSpec, target: TableSpec, function: Function) -> TableSpec:
    """The rows ``function`` answers for each row of ``parent``, beside that row's primary key:
    ``SELECT p.<key> AS pgrst_parent_<key>, pgrst_call.* FROM parent p, LATERAL function(p)``."""
    quote = catalog.quote
    table = parent.table
    qualified = f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)
    keys = ", ".join(f"p.{quote(c.name)} AS {quote(_PARENT + c.name)}" for c in parent.primary_key)
    # A function of one row that finds none answers a row of NULLs, as PostgreSQL (and PostgREST) give it.
    sql = f"SELECT {keys}, {SOURCE}.* FROM {qualified} AS p CROSS JOIN LATERAL {catalog.qualified(function)}(p) " \
          f"AS {SOURCE}"
    shown = [column(_PARENT + c.name, c.column.type) for c in parent.primary_key]
    shown += [column(c.name, c.column.type) for c in target.columns.values()]
    bound = text(sql).columns(*shown).subquery(SOURCE)
    specs = {name: _repointed(spec, bound.c[name]) for name, spec in target.columns.items()}
    for c in parent.primary_key:
        specs[_PARENT + c.name] = replace(_repointed(c, bound.c[_PARENT + c.name]), name=_PARENT + c.name,
                                          policy=Policy.HIDDEN)
    return TableSpec(target.name, bound, specs, (), read_only=True, relations=dict(target.relations),
                     links=target.links)


# -- planning: the call's result as a relation ------------------------------------------------

def result_spec(catalog: Catalog, registry: Registry, function: Function, arguments: dict[str, Any],
                raw: str | None) -> TableSpec:
    """The call's rows as a table to read (PostgreSQL): the served table's or view's columns, with
    their policies (a hidden column stays hidden), relations and computed fields, when the function
    returns its rows; else its OUT / TABLE columns."""
    sql = _postgresql_rows_sql(catalog, function, arguments, raw)
    if function.returns_relation:
        base = registry.tables[function.returns_relation]
        columns = [column(c.name, c.column.type) for c in base.columns.values()]
        bound = _bound(sql, arguments, raw).columns(*columns).subquery(SOURCE)
        specs = {name: _repointed(spec, bound.c[name]) for name, spec in base.columns.items()}
        # No primary key: the rows come in the function's own order, as PostgREST answers them.
        spec = TableSpec(base.name, bound, specs, (), read_only=True, relations=dict(base.relations),
                         links=base.links)
        return _computed(catalog, registry, spec) if isinstance(base, ComputedSpec) else spec
    shape = function.columns or ((function.name, function.returns),)
    table = Table(function.name, MetaData(), *(Column(name, _pg_type(type_name)) for name, type_name in shape))
    return _spec_over(table, _bound(sql, arguments, raw), catalog.unreadable(function))


def _spec_over(table: Table, statement, unreadable: frozenset[str]) -> TableSpec:
    bound = statement.columns(*(column(c.name, c.type) for c in table.columns)).subquery(SOURCE)
    specs = {c.name: _repointed(column_spec(c), bound.c[c.name]) for c in table.columns}
    for name in unreadable & set(specs):
        specs[name] = replace(specs[name], policy=Policy.HIDDEN)
    return TableSpec(table.name, bound, specs, (), read_only=True)


def _repointed(spec: ColumnSpec, target) -> ColumnSpec:
    return ColumnSpec(spec.name, target, spec.policy, spec.kind, spec.nullable, spec.required, spec.max_length,
                      spec.length_declared, spec.int_bits)


def _bound(sql: str, arguments: dict[str, Any], raw: str | None):
    statement = text(sql)
    if raw is not None:
        return statement.bindparams(tiddly_raw=raw)
    if arguments:
        return statement.bindparams(tiddly_args=jsonio.dumps(arguments).decode())
    return statement


def _postgresql_call(catalog: Catalog, function: Function, arguments: dict[str, Any],
                     raw: str | None) -> tuple[str, str]:
    """(the function's call, what it is called FROM): arguments by name from one JSON record."""
    if raw is not None:
        return f"{catalog.qualified(function)}(CAST(:tiddly_raw AS {function.parameters[0].type}))", ""
    given = [p for p in function.parameters if p.name in arguments]
    named = ", ".join(f"{catalog.quote(p.name)} := {_ARGS}.{catalog.quote(p.name)}" for p in given)
    call = f"{catalog.qualified(function)}({named})"
    if not given:
        return call, ""
    fields = ", ".join(f"{catalog.quote(p.name)} {p.type}" for p in given)
    return call, f"json_to_record(CAST(:tiddly_args AS json)) AS {_ARGS}({fields})"


def _postgresql_rows_sql(catalog: Catalog, function: Function, arguments: dict[str, Any], raw: str | None) -> str:
    call, args = _postgresql_call(catalog, function, arguments, raw)
    alias = SOURCE if function.returns_relation or function.columns else f"{SOURCE}({catalog.quote(function.name)})"
    source = f"{call} AS {alias}"
    return f"SELECT {SOURCE}.* FROM " + (f"{args} CROSS JOIN LATERAL {source}" if args else source)


def _pg_type(type_name: str):
    """The SQLAlchemy type of a result column PostgreSQL names ``type_name``. A type SQLAlchemy does
    not know (an enum, a domain) is read as its text and compared as itself."""
    array = type_name.endswith("[]")
    base = re.sub(r"\(.*\)", "", type_name[:-2] if array else type_name).strip()
    found = ischema_names.get(base)
    if found is None:
        return DatabaseText(_Named(type_name))
    sqltype = found()
    if isinstance(sqltype, AbstractRange):
        return DatabaseText(sqltype)  # PostgreSQL's own text: "[1,2)"
    return ARRAY(sqltype) if array else sqltype


class _Named(UserDefinedType):
    """A type by the name the catalog gives it: what a compared value is cast to."""
    cache_ok = True

    def __init__(self, name: str):
        self.name = name

    def get_col_spec(self, **_kw) -> str:
        return self.name


# -- running ---------------------------------------------------------------------------------

def run(session: Session, call: Call, context=None) -> Called:
    """Run the call in the executor's scope: a write's transaction, or a read's, made READ ONLY.
    ``context``: the executor's ``plan.Context`` (its budget bounds the rows the call's embeds load)."""
    budget = context.budget if context is not None else None
    connection = session.connection()
    dialect = connection.dialect.name
    read_only = not call.function.writes
    try:
        if read_only:
            connection.exec_driver_sql("BEGIN READ ONLY" if dialect == "postgresql" else "START TRANSACTION READ ONLY")
        if dialect == "postgresql":
            called = _run_postgresql(session, call, budget)
        else:
            called = _run_mysql(session, call, budget)
        if read_only and dialect == "postgresql":
            connection.exec_driver_sql("COMMIT")  # the read scope rests in autocommit
    except DBAPIError as exc:
        raise _failed(exc) from exc
    if call.function.writes:
        called.changes = [Change(table, "call", ()) for table in sorted(call.writes)]
    return called


def _run_postgresql(session: Session, call: Call, budget) -> Called:
    kind = call.kind
    if kind in ("none", "value"):
        value = session.execute(_bound(call.sql, call.arguments, call.raw)).scalar()
        return Called(kind, value=value if kind == "value" else None, count=1 if kind == "value" else None)
    return _rows(session, call, call.returning, budget)


def _rows(session: Session, call: Call, read: Read, budget) -> Called:
    if not call.function.writes:
        result = reads.run(session, read, budget)
        return Called(call.kind, rows=result.rows, count=result.count, table=read.table,
                      offset=read.offset)
    # A function that writes runs once: every row it answers is read, then paged here.
    result = reads.run(session, replace(read, limit=None, offset=0, count=False), budget)
    end = None if read.limit is None else read.offset + read.limit
    return Called(call.kind, rows=result.rows[read.offset:end], count=len(result.rows), table=read.table,
                  offset=read.offset)


# -- MariaDB ---------------------------------------------------------------------------------

def _run_mysql(session: Session, call: Call, budget) -> Called:
    function = call.function
    values = {f"a{i}": _mysql_value(call.arguments.get(p.name)) for i, p in enumerate(function.parameters)}
    if function.kind == "function":
        value = session.execute(text(call.sql), values).scalar()
        return Called("value", value=value, count=1)
    result = session.execute(text(call.sql), values)
    if not result.returns_rows:
        return Called("none")
    names = list(result.keys())
    types = [_mysql_column_type(d[1]) for d in result.cursor.description]
    data = [list(row) for row in result.fetchall()]
    table = Table(function.name, MetaData(), *(Column(name, sqltype) for name, (sqltype, _) in zip(names, types)))
    listed = ", ".join(f"{_mysql_quote(name)} {declared} PATH '$[{i}]'" for i, (name, (_, declared))
                       in enumerate(zip(names, types)))
    statement = text(f"SELECT * FROM JSON_TABLE(:tiddly_rows, '$[*]' COLUMNS ({listed})) AS {SOURCE}") \
        .bindparams(tiddly_rows=jsonio.dumps([[_jsonable(v) for v in row] for row in data]).decode())
    spec = _spec_over(table, statement, call.unreadable)
    return _rows(session, call, call.plan_rows(spec), budget)


def _mysql_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _mysql_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return jsonio.dumps(value).decode()
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def _mysql_column_type(type_code: int):
    """(SQLAlchemy type, the JSON_TABLE column type) of a result column, by its protocol type."""
    if type_code in (1, 2, 3, 8, 9, 13):  # TINY, SHORT, LONG, LONGLONG, INT24, YEAR
        return BigInteger(), "BIGINT"
    if type_code in (0, 246):  # DECIMAL, NEWDECIMAL
        return Numeric(65, 30), "DECIMAL(65,30)"
    if type_code in (4, 5):  # FLOAT, DOUBLE
        return Float(), "DOUBLE"
    if type_code in (10, 14):
        return Date(), "DATE"
    if type_code in (7, 12):
        return DateTime(), "DATETIME(6)"
    if type_code == 11:
        return Time(), "TIME(6)"
    return Text(), "LONGTEXT"


# -- errors ----------------------------------------------------------------------------------

_READ_ONLY = ("25006", 1792)  # PostgreSQL read_only_sql_transaction; MariaDB ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION


def _failed(exc: DBAPIError) -> Exception:
    orig = exc.orig
    args = getattr(orig, "args", ())
    if getattr(orig, "sqlstate", None) in _READ_ONLY or (args and args[0] in _READ_ONLY):
        refused = FunctionFailed("the function tried to write, but the database says it does not: it ran in a "
                                 "READ ONLY transaction, which refused the write", "25006")
        refused.status = 405
        return refused
    translated = translate_error(exc)
    if isinstance(translated, ApiError):
        return translated
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        return FunctionFailed(diag.message_primary or str(orig), getattr(orig, "sqlstate", None),
                              diag.message_detail, diag.message_hint)
    message = args[1] if len(args) > 1 else str(orig)
    return FunctionFailed(str(message), str(args[0]) if args else None)


def call_sql(catalog: Catalog, function: Function, arguments: dict[str, Any], raw: str | None) -> str:
    """The statement that calls a function answering one value (or none), or a MariaDB procedure."""
    if catalog.dialect_name == "postgresql":
        call, args = _postgresql_call(catalog, function, arguments, raw)
        selected = f"to_json({call})" if result_kind(function) == "value" else call
        return f"SELECT {selected}" + (f" FROM {args}" if args else "")
    placeholders = ", ".join(f":a{i}" for i in range(len(function.parameters)))
    verb = "CALL" if function.kind == "procedure" else "SELECT"
    return f"{verb} {catalog.qualified(function)}({placeholders})"


__all__ = ["Catalog", "Call", "Called", "ComputedSpec", "FunctionFailed", "call_sql", "result_kind", "result_spec", "run"]
