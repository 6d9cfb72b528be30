"""Command-line pieces beside `tiddly serve`: choosing the schema source, `tiddly openapi`.

``tiddly.py`` owns the ``tiddly`` group and adds these; nothing here imports Flask.
"""
from __future__ import annotations

import functools
import json

import click

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
    if chosen.managed:
        db.create_all(chosen.metadata)
    return chosen


@click.command("openapi")
@database_url_option
@schema_options
def openapi_command(database_url: str | None, source: dict) -> None:
    """Print the OpenAPI 3.1 document the server would serve at /-/openapi.json."""
    import openapi

    config = Config.from_env(database_url=database_url)
    db = Database(config.database_url, config.statement_timeout_ms)
    try:
        chosen = load_schema(db, source)
    finally:
        db.dispose()
    click.echo(json.dumps(openapi.document(chosen.registry, config), indent=2, sort_keys=False))
