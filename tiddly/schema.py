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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sqlalchemy import MetaData, UniqueConstraint, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from tiddly.registry import Registry, table_spec

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
    """Read every table of an existing database (or the named ones) without model code."""
    # A reflected schema is never created (create_app), and Tiddly's own tables live apart from it.
    metadata = MetaData(info={"reflected": True})
    chosen = list(tables) if tables else None
    try:
        # The tables name their schema, the database's default one: Tiddly's own tables, which
        # name none, are then the only ones sent to their home apart (database.StateHome).
        default = inspect(engine).default_schema_name
        # Referenced tables are reflected too (foreign keys need them), but only chosen ones are exposed.
        metadata.reflect(engine, schema=default, only=chosen, resolve_fks=True)
    except Exception as exc:  # noqa: BLE001 - the CLI reports it in one sentence
        raise SchemaError(f"cannot reflect the database: {exc.__class__.__name__}: {_first_line(exc)}") from exc
    if engine.dialect.name == "sqlite":
        _add_sqlite_column_uniques(engine, metadata)
        _sqlite_rowid_keys_not_null(engine, metadata)
    own = _gateway_tables()
    refused = sorted(own & set(chosen or ()))
    if refused:
        raise SchemaError(f"{', '.join(refused)}: Tiddly's own tables (keys, tokens) are never exposed")
    found = [t.name for t in metadata.tables.values()
             if t.schema == default and t.name not in _BOOKKEEPING and t.name not in own]
    names = [n for n in chosen or found if n not in set(exclude)]
    if not names:
        raise SchemaError(_nothing_to_reflect(engine, bool(found)))
    _copy_shipped_policies(metadata)
    return Schema(metadata, _registry(metadata, names, set()), False, "reflected")


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


def _add_sqlite_column_uniques(engine: Engine, metadata: MetaData) -> None:
    """SQLAlchemy misses SQLite's column-level UNIQUE (``email TEXT UNIQUE``); its autoindexes tell."""
    with engine.connect() as conn:
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


def _sqlite_rowid_keys_not_null(engine: Engine, metadata: MetaData) -> None:
    """A table's one ``INTEGER PRIMARY KEY`` is never NULL (SQLite's rowid, or enforced WITHOUT ROWID),
    but reflects as nullable when the DDL does not say NOT NULL, and SQLAlchemy then refuses to insert
    many rows returning their keys in order (a bulk POST)."""
    with engine.connect() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for table in metadata.tables.values():
            keys = [row for row in conn.exec_driver_sql(f"PRAGMA table_info({quote(table.name)})").mappings()
                    if row["pk"]]
            if len(keys) == 1 and keys[0]["type"].upper() == "INTEGER":
                table.c[keys[0]["name"]].nullable = False


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
