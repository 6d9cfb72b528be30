"""Where the exposed tables come from: the shipped models, a user's models file, or reflection.

Each source gives a ``Schema``: the SQLAlchemy ``MetaData`` and the ``Registry``
built from it. ``managed`` says whether Tiddly owns the tables (and may create
them): a reflected database is never created, altered or migrated.

A models file is a plain Python module defining a ``DeclarativeBase`` subclass
and its models. Registry options may sit beside them, as module-level names:

    TIDDLY_TABLES = ["notes"]        # expose only these tables (default: all)
    TIDDLY_READ_ONLY = ["audit"]     # expose these for reading only
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sqlalchemy import (
    JSON,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    cast,
    inspect,
)
from sqlalchemy.dialects.postgresql.ranges import AbstractRange
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

from tiddly.registry import Registry, table_spec
from tiddly.storage.catalog import ViewFacts, json_columns, view_facts

log = logging.getLogger("tiddly")

# Alembic's bookkeeping table is never a table a client means to see.
_BOOKKEEPING = ("alembic_version",)


class SchemaError(Exception):
    """A models file or a reflection request that cannot give a schema; the message says why."""


@dataclass(frozen=True)
class Schema:
    metadata: MetaData
    registry: Registry
    managed: bool
    origin: str  # "shipped", a models file's path, or "reflected"


def shipped() -> Schema:
    from tiddly.models import Base
    return Schema(Base.metadata, Registry.from_metadata(Base.metadata), True, "shipped")


def from_models_file(path: str | Path) -> Schema:
    """Import a user's models file and expose its tables (as its TIDDLY_* options say)."""
    module = _import_file(Path(path))
    base = _find_base(module, path)
    metadata = base.metadata
    tables = _names_option(module, "TIDDLY_TABLES")
    read_only = set(_names_option(module, "TIDDLY_READ_ONLY") or ())
    known = set(metadata.tables)
    unknown = sorted((set(tables or ()) | read_only) - known)
    if unknown:
        raise SchemaError(f"{path} names tables its models do not define: {', '.join(unknown)}")
    registry = _registry(metadata, tables, read_only).add_relations(base.registry.mappers)
    return Schema(metadata, registry, True, str(path))


def reflected(engine: Engine, tables: Iterable[str] | None = None,
              exclude: Iterable[str] = ()) -> Schema:
    """Read every table and view of an existing database (or the named ones) without model code."""
    # A reflected schema is never created (create_app), and Tiddly's own tables live apart from it.
    metadata = MetaData(info={"reflected": True})
    chosen = list(tables) if tables else None
    try:
        # The tables name their schema, the database's default one: Tiddly's own tables, which
        # name none, are then the only ones sent to their home apart (database.StateHome).
        default = inspect(engine).default_schema_name
        _reflect(engine, metadata, default, chosen)
        with engine.connect() as conn:
            _read_catalog(conn, metadata, default)
    except SchemaError:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI reports it in one sentence
        raise SchemaError(f"cannot reflect the database: {exc.__class__.__name__}: {_first_line(exc)}") from exc
    own = _gateway_tables()
    refused = sorted(own & set(chosen or ()))
    if refused:
        raise SchemaError(f"{', '.join(refused)}: Tiddly's own tables (keys, tokens) are never exposed")
    found = [t.name for t in metadata.tables.values()
             if t.schema == default and t.name not in _BOOKKEEPING and t.name not in own and not t.info.get("source")]
    names = [n for n in chosen or found if n not in set(exclude)]
    if not names:
        raise SchemaError(_nothing_to_reflect(engine, bool(found)))
    _copy_shipped_policies(metadata)
    return Schema(metadata, _registry(metadata, names, set()), False, "reflected")


def _reflect(engine: Engine, metadata: MetaData, default: str | None, chosen: list[str] | None) -> None:
    """Reflect the tables and views (all, or the chosen ones). Referenced tables are reflected too
    (foreign keys need them), but only chosen ones are exposed. A view the database can no longer
    read (SQLite and MariaDB keep a view whose table was dropped) is left out with a warning, unless
    it was chosen by name: then it is an error."""
    try:
        metadata.reflect(engine, schema=default, only=chosen, resolve_fks=True, views=True)
    except DBAPIError:
        metadata.clear()  # some view does not read: take the tables, then the views one by one
    else:
        # MariaDB's reflection skips such a view with a warning instead
        unread = [name for name in chosen or () if _key(default, name) not in metadata.tables]
        if unread:
            raise SchemaError(f"the view {', '.join(unread)} cannot be read: its table is gone, or "
                              "the user may not read it")
        return
    inspector = inspect(engine)
    views = set(inspector.get_view_names(default))
    metadata.reflect(engine, schema=default, resolve_fks=True,
                     only=None if chosen is None else [name for name in chosen if name not in views])
    for name in sorted(views) if chosen is None else [name for name in chosen if name in views]:
        try:
            with engine.connect() as conn:
                Table(name, metadata, schema=default, autoload_with=conn)
        except DBAPIError as exc:
            if chosen is not None:
                raise SchemaError(f"the view {name} cannot be read: {_first_line(exc.orig)}") from exc
            log.warning("--reflect leaves out the view %s: the database cannot read it (%s)", name,
                        _first_line(exc.orig))


class DatabaseText(TypeDecorator):
    """A column read and written as its database's own text for the value: a PostgreSQL range
    is ``"[1,2)"`` (as PostgREST shows it), not an object. Filters and order use the column as
    it is; a value written or compared is cast back to the column's type by the database."""
    impl = Text
    cache_ok = True

    def __init__(self, database_type):
        super().__init__()
        self.database_type = database_type

    def column_expression(self, column):
        return cast(column, Text)

    def bind_expression(self, value):
        return cast(value, self.database_type)


def _read_catalog(conn: Connection, metadata: MetaData, default: str | None) -> None:
    """What reflection leaves out, from the database's catalog: keys are never null, MariaDB's
    JSON columns hold JSON, ranges read as text, and what each view is (see ``_describe_view``)."""
    if conn.dialect.name == "sqlite":
        _add_sqlite_column_uniques(conn, metadata)
    for table_name, column_name in json_columns(conn, default):
        table = metadata.tables.get(_key(default, table_name))
        if table is not None and column_name in table.c:
            table.c[column_name].type = JSON()
    for table in metadata.tables.values():
        for column in table.primary_key.columns:
            column.nullable = False  # SQLite reports its INTEGER PRIMARY KEY nullable; it never holds NULL
        for column in table.columns:
            if isinstance(column.type, AbstractRange):
                column.type = DatabaseText(column.type)
    for name, facts in view_facts(conn, default).items():
        view = metadata.tables.get(_key(default, name))
        if view is not None:
            _describe_view(conn, metadata, view, facts, default)


def _key(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _describe_view(conn: Connection, metadata: MetaData, view: Table, facts: ViewFacts, default: str | None) -> None:
    """A view is written only where its database says it can be, and only by a key: the
    primary key of the table it shows, when it shows all of it (a view the database writes
    has one table under it, so that key is the view's too). Each column that shows a table's
    column unchanged takes that column's type, nullability and default, and lets relations
    follow that column's foreign keys (``view.info["origins"]``); the columns the database will
    not write are read-only."""
    origins = {}
    for column_name, (table_name, source_name) in facts.origins.items():
        source = _source_table(conn, metadata, default, table_name)
        if source is None or source_name not in source.c or column_name not in view.c:
            continue
        column, shown = view.c[column_name], source.c[source_name]
        column.type, column.nullable = shown.type, shown.nullable
        if shown.server_default is not None or shown.default is not None or shown is source.autoincrement_column:
            column.info["database_default"] = True
        origins[column_name] = (source, source_name)
    view.info.update(view=True, origins=origins, writes=facts.writes)
    for column_name in facts.read_only_columns:
        if column_name in view.c:
            view.c[column_name].info.setdefault("policy", "read_only")
    key = _shown_key(origins) if facts.writes else None
    if key:
        for column_name, source_column in key:
            view.c[column_name].autoincrement = source_column is source_column.table.autoincrement_column
        view.append_constraint(PrimaryKeyConstraint(*(view.c[name] for name, _ in key)))
    else:
        view.info["read_only"] = True


def _source_table(conn: Connection, metadata: MetaData, default: str | None, name: str) -> Table | None:
    """The table a view shows, reflected when the chosen tables left it out (it is not exposed)."""
    table = metadata.tables.get(_key(default, name))
    if table is None:
        try:
            table = Table(name, metadata, schema=default, autoload_with=conn, info={"source": True})
        except Exception:  # noqa: BLE001 - a table it cannot read gives the view no key, nothing worse
            return None
    return table


def _shown_key(origins: dict) -> list | None:
    """(view column, table column) for the whole primary key of the table the view shows."""
    shown = {(source, source_name): name for name, (source, source_name) in origins.items()}
    for source in dict.fromkeys(source for source, _ in origins.values()):
        key = [(shown.get((source, column.name)), column) for column in source.primary_key.columns]
        if key and all(name is not None for name, _ in key):
            return key
    return None


def _nothing_to_reflect(engine: Engine, excluded: bool) -> str:
    where = engine.url.render_as_string(hide_password=True)
    if excluded:
        return f"--exclude leaves no table of {where} to serve"
    return (f"{where} has no tables to serve: --reflect serves the tables a database already has. "
            "Create yours first, or leave out --reflect to serve Tiddly's demo tables there")


def _gateway_tables() -> set[str]:
    from tiddly.models import internal_tables
    return {t.name for t in internal_tables()}


def _copy_shipped_policies(metadata: MetaData) -> None:
    """A reflected table named like a shipped one keeps the shipped columns' policies, so
    ``user.password`` stays write-only and hashed: reflection must not expose the hashes."""
    from tiddly.models import Base
    for table in metadata.tables.values():
        shipped = Base.metadata.tables.get(table.name)
        for column in table.columns if shipped is not None else ():
            declared = shipped.c[column.name].info.get("policy") if column.name in shipped.c else None
            if declared:
                column.info.setdefault("policy", declared)


def _add_sqlite_column_uniques(conn: Connection, metadata: MetaData) -> None:
    """SQLAlchemy misses SQLite's column-level UNIQUE (``email TEXT UNIQUE``); its autoindexes tell."""
    for table in metadata.tables.values():
        known = {frozenset(c.name for c in con.columns) for con in table.constraints
                 if isinstance(con, UniqueConstraint)}
        quote = conn.dialect.identifier_preparer.quote
        for index in conn.exec_driver_sql(f"PRAGMA index_list({quote(table.name)})").mappings():
            if index["origin"] != "u":
                continue
            info = conn.exec_driver_sql(f"PRAGMA index_info({quote(index['name'])})")
            names = frozenset(row["name"] for row in info.mappings())
            if names not in known:
                table.append_constraint(UniqueConstraint(*(table.c[n] for n in names)))
                known.add(names)


def _registry(metadata: MetaData, names: list[str] | None, read_only: set[str]) -> Registry:
    chosen = set(names) if names is not None else None
    return Registry(table_spec(t, read_only=t.name in read_only) for t in metadata.sorted_tables
                    if (chosen is None or t.name in chosen) and not t.name.startswith("-"))


def _import_file(path: Path):
    if not path.is_file():
        raise SchemaError(f"no models file at {path}")
    name = "tiddly_models_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # SQLAlchemy resolves annotations through sys.modules
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise SchemaError(f"{path} failed to import: {exc.__class__.__name__}: {_first_line(exc)}") from exc
    finally:
        sys.path.pop(0)
    return module


def _find_base(module, path) -> type[DeclarativeBase]:
    """The file's declarative base (any class of it: they share one metadata and one registry)."""
    bases = {id(obj.metadata): obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, DeclarativeBase) and obj is not DeclarativeBase}
    if len(bases) != 1:
        found = "none" if not bases else f"{len(bases)}"
        raise SchemaError(f"{path} must define one DeclarativeBase subclass with its models; found {found}")
    base = next(iter(bases.values()))
    if not base.metadata.tables:
        raise SchemaError(f"{path} defines a DeclarativeBase but no models (tables)")
    return base


def _names_option(module, name: str) -> list[str] | None:
    value = getattr(module, name, None)
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{name} must be a list of table names")
    return list(value)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
