"""Command-line pieces beside `tiddly serve`: choosing the schema source, `tiddly openapi`.

``tiddly.py`` owns the ``tiddly`` group and adds these; nothing here imports Flask.
"""
from __future__ import annotations

import functools
import json

import click

import migrate
import schema
from config import DEFAULT_DATABASE_URL, Config
from database import Database


def _names(raw: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in raw for name in value.split(",") if name.strip()]


def schema_options(command):
    """--models / --reflect / --tables / --exclude: where the exposed tables come from."""
    options = (
        click.option("--models", "models_file", type=click.Path(dir_okay=False), default=None,
                     help="a Python file with your own declarative models, instead of the shipped ones"),
        click.option("--reflect", is_flag=True, help="expose the tables the database already has (no models)"),
        click.option("--tables", multiple=True, help="with --reflect: expose only these (comma-separated)"),
        click.option("--exclude", multiple=True, help="with --reflect: do not expose these (comma-separated)"),
    )

    @functools.wraps(command)
    def wrapper(*args, models_file, reflect, tables, exclude, **kwargs):
        if models_file and reflect:
            raise click.UsageError("choose --models or --reflect, not both")
        if (tables or exclude) and not reflect:
            raise click.UsageError("--tables and --exclude go with --reflect")
        source = {"models_file": models_file, "reflect": reflect,
                  "tables": _names(tables), "exclude": _names(exclude)}
        return command(*args, source=source, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def database_url_option(command):
    return click.option(
        "--database-url", default=None,
        help=f"SQLAlchemy URL (env TIDDLY_DATABASE_URL or DATABASE_URL; default {DEFAULT_DATABASE_URL})",
    )(command)


def load_schema(db: Database, source: dict) -> schema.Schema:
    """The schema the options name; a problem with it is a one-line CLI error."""
    try:
        if source["reflect"]:
            return schema.reflected(db.engine, source["tables"] or None, source["exclude"])
        if source["models_file"]:
            return schema.from_models_file(source["models_file"])
        return schema.shipped()
    except schema.SchemaError as exc:
        raise click.ClickException(str(exc)) from None


def prepare_schema(db: Database, source: dict) -> schema.Schema:
    """Load the schema and make the database ready for it, once, before any worker starts."""
    chosen = load_schema(db, source)
    if chosen.origin == "shipped":
        _migrate_or_refuse(db)
    elif chosen.managed:
        db.create_all(chosen.metadata)
    return chosen


def _migrate_or_refuse(db: Database) -> None:
    """SQLite upgrades itself; a server database behind the models refuses to serve."""
    state = migrate.state(db.engine)
    if state.at_head:
        return
    if state.current is None and state.has_tables:
        # Made by create_all (an older Tiddly, or the test suite): serve it, adding missing tables.
        db.create_all(schema.shipped().metadata)
        click.echo("Tiddly: this schema is not under migration control; when it matches the models, "
                   "run `tiddly db stamp head`", err=True)
        return
    if db.dialect_name == "sqlite":
        migrate.upgrade(db.engine)
        click.echo(f"Tiddly: migrated the database to revision {state.head}", err=True)
        if migrate.missing_tables(db.engine):
            # Still serve; the test suite's migration check fails until the history catches up.
            db.create_all(schema.shipped().metadata)
            click.echo("Tiddly: the migration history lags the models; run "
                       "`tiddly db revision --autogenerate -m ...`", err=True)
        return
    raise click.ClickException(
        f"the database schema is at revision {state.current or 'none (no tables)'} but the models need "
        f"{state.head}; run `tiddly db upgrade --database-url <url>` first")


@click.command("openapi")
@database_url_option
@schema_options
def openapi_command(database_url: str | None, source: dict) -> None:
    """Print the OpenAPI 3.1 document the server would serve at /-/openapi.json."""
    import tiddly  # the document describes the app exactly as create_app builds it

    config = Config.from_env(database_url=database_url)
    db = Database(config.database_url, config.statement_timeout_ms)
    try:
        chosen = load_schema(db, source)
    finally:
        db.dispose()
    app = tiddly.create_app(config.with_(create_tables=False), chosen.metadata, chosen.registry)
    try:
        click.echo(json.dumps(tiddly.openapi_document(app.extensions["tiddly"]), indent=2))
    finally:
        app.extensions["tiddly"].db.dispose()


# -- tiddly db -----------------------------------------------------------------

@click.group("db")
def db_group() -> None:
    """Migrate the shipped models' tables (Alembic; history in migrations/versions)."""


def _url(database_url: str | None) -> str:
    return Config.from_env(database_url=database_url).database_url


@db_group.command("upgrade")
@click.argument("revision", default="head")
@database_url_option
def db_upgrade(revision: str, database_url: str | None) -> None:
    """Upgrade the database to REVISION (default: head)."""
    migrate.upgrade(_url(database_url), revision)
    click.echo(f"at {migrate.current(_url(database_url)) or 'base'}")


@db_group.command("downgrade")
@click.argument("revision", default="-1")
@database_url_option
def db_downgrade(revision: str, database_url: str | None) -> None:
    """Downgrade the database to REVISION (default: one step back; "base": no tables)."""
    migrate.downgrade(_url(database_url), revision)
    click.echo(f"at {migrate.current(_url(database_url)) or 'base'}")


@db_group.command("current")
@database_url_option
def db_current(database_url: str | None) -> None:
    """Print the database's revision, and whether it is the head."""
    current, head = migrate.current(_url(database_url)), migrate.head()
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
    migrate.stamp(_url(database_url), revision)
    click.echo(f"stamped {revision}")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="what the revision changes")
@click.option("--autogenerate", is_flag=True, help="compare the models with the database to write the steps")
@click.option("--rev-id", default=None, help="the revision's id (default: a random one)")
@database_url_option
def db_revision(message: str, autogenerate: bool, rev_id: str | None, database_url: str | None) -> None:
    """Write a new revision file into migrations/versions."""
    click.echo(migrate.revision(_url(database_url), message, autogenerate, rev_id))
