"""Migrations of the shipped models with Alembic: `tiddly db ...` and the check `tiddly serve` makes.

The history lives in ``migrations/versions``; no alembic.ini is needed. Only the
shipped models are migrated: ``--models`` tables are created when missing, and a
reflected database is never touched.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from tiddly.models import Base
from tiddly.storage import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection=None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@contextmanager
def _connected(url_or_engine: str | Engine) -> Iterator[AlembicConfig]:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as connection:
            yield alembic_config(connection)
            connection.commit()
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def upgrade(url: str | Engine, revision: str = "head") -> None:
    with _connected(url) as config:
        command.upgrade(config, revision)


def downgrade(url: str | Engine, revision: str = "-1") -> None:
    with _connected(url) as config:
        command.downgrade(config, revision)


def stamp(url: str | Engine, revision: str = "head") -> None:
    with _connected(url) as config:
        command.stamp(config, revision)


def revision(url: str | Engine, message: str, autogenerate: bool = True, rev_id: str | None = None) -> str:
    """Write a new revision file (compared with the database at ``url``); returns its path."""
    with _connected(url) as config:
        script = command.revision(config, message=message, autogenerate=autogenerate, rev_id=rev_id)
    scripts = script if isinstance(script, list) else [script]
    return ", ".join(s.path for s in scripts if s is not None)


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def history() -> list[str]:
    """One line per revision, newest first."""
    scripts = ScriptDirectory.from_config(alembic_config()).walk_revisions()
    return [f"{s.revision} (revises {s.down_revision or 'nothing'}): {s.doc}" for s in scripts]


def differences(url: str | Engine) -> list:
    """What autogenerate would change: [] when the database matches the shipped models."""
    with _connected(url) as config:
        context = MigrationContext.configure(config.attributes["connection"], opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


@dataclass(frozen=True)
class State:
    current: str | None      # the database's revision; None: not under migration control
    head: str
    has_tables: bool         # any shipped model's table exists
    other_tables: int        # tables that are neither the shipped models' nor Alembic's

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def empty(self) -> bool:
        """No table at all (but perhaps Alembic's, after a downgrade to base): nothing to lose."""
        return not self.has_tables and not self.other_tables

    @property
    def someone_elses(self) -> bool:
        """Tables, and none of them Tiddly's: a database Tiddly did not make."""
        return self.current is None and not self.has_tables and bool(self.other_tables)


def state(engine: Engine) -> State:
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        existing = set(inspect(connection).get_table_names())
    shipped = set(Base.metadata.tables)
    return State(current, head(), bool(existing & shipped), len(existing - shipped - {"alembic_version"}))


def missing_tables(engine: Engine) -> set[str]:
    """Tables of the shipped models that the database lacks."""
    with engine.connect() as connection:
        return set(Base.metadata.tables) - set(inspect(connection).get_table_names())


def current(url: str | Engine) -> str | None:
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        return state(engine).current
    finally:
        if isinstance(url, str):
            engine.dispose()
