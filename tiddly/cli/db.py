"""`tiddly db ...` (Alembic migrations of the shipped models) and `tiddly openapi`."""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import click
from sqlalchemy.engine import Engine

from tiddly import migrate
from tiddly.cli.options import (
    database_url_option,
    load_schema,
    open_database,
    schema_options,
)
from tiddly.tiddly import create_app, openapi_document


@click.command("openapi")
@database_url_option
@schema_options
def openapi_command(database_url: str | None, source: dict) -> None:
    """Print the OpenAPI 3.1 document the server would serve at /-/openapi.json."""
    config, db = open_database(database_url, reflect=source["reflect"])
    try:
        chosen = load_schema(db, source)
    finally:
        db.dispose()
    app = create_app(config.with_(create_tables=False), chosen.metadata, chosen.registry)
    try:
        click.echo(json.dumps(openapi_document(app.extensions["tiddly"]), indent=2))
    finally:
        app.extensions["tiddly"].db.dispose()


# -- tiddly db -----------------------------------------------------------------

@click.group("db")
def db_group() -> None:
    """Migrate the shipped models' tables (Alembic; history in migrations/versions)."""


@contextmanager
def _engine(database_url: str | None) -> Iterator[Engine]:
    _config, db = open_database(database_url)
    try:
        yield db.engine
    finally:
        db.dispose()


@db_group.command("upgrade")
@click.argument("revision", default="head")
@database_url_option
def db_upgrade(revision: str, database_url: str | None) -> None:
    """Upgrade the database to REVISION (default: head)."""
    with _engine(database_url) as engine:
        migrate.upgrade(engine, revision)
        click.echo(f"at {migrate.current(engine) or 'base'}")


@db_group.command("downgrade")
@click.argument("revision", default="-1")
@database_url_option
def db_downgrade(revision: str, database_url: str | None) -> None:
    """Downgrade the database to REVISION (default: one step back; "base": no tables)."""
    with _engine(database_url) as engine:
        migrate.downgrade(engine, revision)
        click.echo(f"at {migrate.current(engine) or 'base'}")


@db_group.command("current")
@database_url_option
def db_current(database_url: str | None) -> None:
    """Print the database's revision, and whether it is the head."""
    with _engine(database_url) as engine:
        current, head = migrate.current(engine), migrate.head()
    click.echo(f"{current or 'base'}{' (head)' if current == head else f' (head is {head})'}")


@db_group.command("history")
def db_history() -> None:
    """List the revisions, newest first."""
    for line in migrate.history():
        click.echo(line)


@db_group.command("stamp")
@click.argument("revision", default="head")
@database_url_option
def db_stamp(revision: str, database_url: str | None) -> None:
    """Record REVISION as the database's without running migrations (for a schema made by create_all)."""
    with _engine(database_url) as engine:
        migrate.stamp(engine, revision)
    click.echo(f"stamped {revision}")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="what the revision changes")
@click.option("--autogenerate", is_flag=True, help="compare the models with the database to write the steps")
@click.option("--rev-id", default=None, help="the revision's id (default: a random one)")
@database_url_option
def db_revision(message: str, autogenerate: bool, rev_id: str | None, database_url: str | None) -> None:
    """Write a new revision file into migrations/versions."""
    with _engine(database_url) as engine:
        click.echo(migrate.revision(engine, message, autogenerate, rev_id))
