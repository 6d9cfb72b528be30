"""Options shared by the commands: the database URL, and where the exposed tables come from
(``--models``, ``--reflect``); loading that schema and readying the database for it."""
from __future__ import annotations

import functools

import click

from tiddly import migrate, schema
from tiddly.config import DEFAULT_DATABASE_URL, Config
from tiddly.models import Base, internal_tables
from tiddly.storage import CannotOpen, Database
from tiddly.storage import changes as change_log


def _names(raw: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in raw for name in value.split(",") if name.strip()]


def schema_options(command):
    """--models / --reflect / --tables / --exclude: where the exposed tables come from."""
    options = (
        click.option("--models", "models_file", type=click.Path(dir_okay=False), default=None,
                     help="a Python file with your own declarative models, instead of the shipped ones"),
        click.option("--reflect", is_flag=True,
                     help="expose the tables and views the database already has (no models)"),
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


def open_database(database_url: str | None, reflect: bool = False, **settings) -> tuple[Config, Database]:
    """The settings and the database a command names, connected once: a bad URL or a
    database that cannot be reached is one or two lines naming the problem, not a traceback.
    ``reflect``: the database is someone else's, served as it is: it must exist already, and
    Tiddly's own tables live apart from its tables. ``settings``: more of the Config's fields."""
    config = Config.from_env(database_url=database_url, **settings)
    db = None
    try:
        db = Database.for_config(config, state_apart=reflect)
        db.check_open(must_exist=reflect)
    except CannotOpen as exc:
        if db is not None:
            db.dispose()
        raise click.ClickException(str(exc)) from None
    return config, db


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
    """Load the schema and make the database ready for it (and for Tiddly's own tables), once,
    before any worker starts; under the database's own lock, so that several processes
    starting together on one database take turns and all come up."""
    chosen = load_schema(db, source)
    try:
        with db.schema_lock():
            if chosen.origin == "shipped":
                _migrate_or_refuse(db)
            elif chosen.managed:
                db.create_all(chosen.metadata)
            db.create_state(Base.metadata, internal_tables())
            change_log.create(db)  # the change feed's log, beside Tiddly's other state
    except CannotOpen as exc:
        raise click.ClickException(str(exc)) from None
    return chosen


def _migrate_or_refuse(db: Database) -> None:
    """An empty database, or a SQLite one behind the models, is upgraded to the head; a server
    database behind the models, or any holding tables of its own and none of Tiddly's, refuses
    to serve, naming the command to run."""
    state = migrate.state(db.engine)
    if state.at_head:
        return
    if state.current is None and state.has_tables:
        # Made by create_all (an older Tiddly, or the test suite): serve it, adding missing tables.
        db.create_all(schema.shipped().metadata)
        click.echo("Tiddly: this schema is not under migration control; when it matches the models, "
                   "run `tiddly db stamp head`", err=True)
        return
    upgrade = f"tiddly db upgrade --database-url {db.engine.url.render_as_string(hide_password=True)}"
    if state.someone_elses:
        raise click.ClickException(
            f"the database has {state.other_tables} table{'' if state.other_tables == 1 else 's'} of its own "
            f"and none of Tiddly's: serve those with `tiddly serve --reflect`, or add Tiddly's demo tables "
            f"beside them with `{upgrade}`")
    if db.dialect_name == "sqlite" or state.empty:
        migrate.upgrade(db.engine)
        click.echo(f"Tiddly: {'created the schema at' if state.empty else 'migrated the database to'} "
                   f"revision {state.head}", err=True)
        if migrate.missing_tables(db.engine):
            # Still serve; the test suite's migration check fails until the history catches up.
            db.create_all(schema.shipped().metadata)
            click.echo("Tiddly: the migration history lags the models; run "
                       "`tiddly db revision --autogenerate -m ...`", err=True)
        return
    raise click.ClickException(f"the database schema is at revision {state.current} but the models need "
                               f"{state.head}; run `{upgrade}` first")
