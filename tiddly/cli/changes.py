"""`tiddly changes enable|disable|list TABLE...`: the change feed sees writes by other programs.

Enable adds triggers to the named tables (your schema: hence a command you run, never done
behind your back) that write every insert, update and delete to Tiddly's change log, whoever
makes it (psql, mysql, sqlite3, another app); Tiddly's own writes to those tables are then
logged by the triggers alone. Disable drops exactly what enable added.
"""
from __future__ import annotations

import click

from tiddly.cli.options import database_url_option, load_schema, open_database, schema_options
from tiddly.errors import ApiError
from tiddly.services import changes as feed
from tiddly.storage import changes as change_log


@click.group("changes")
def changes_group() -> None:
    """Turn the change feed's triggers on or off for tables (writes by other programs)."""


def _run(database_url: str | None, source: dict, tables: tuple[str, ...], action) -> None:
    config, db = open_database(database_url, reflect=source["reflect"])
    try:
        chosen = load_schema(db, source)
        change_log.create(db)
        action(db, feed.watched(chosen.registry, list(tables)))
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()


@changes_group.command("enable")
@click.argument("names", nargs=-1, required=True, metavar="TABLE...")
@database_url_option
@schema_options
def enable(names: tuple[str, ...], database_url: str | None, source: dict) -> None:
    """Add triggers that log every write to TABLES, whoever makes it."""
    _run(database_url, source, names, change_log.enable)
    click.echo(f"change feed triggers on: {', '.join(names)}", err=True)


@changes_group.command("disable")
@click.argument("names", nargs=-1, required=True, metavar="TABLE...")
@database_url_option
@schema_options
def disable(names: tuple[str, ...], database_url: str | None, source: dict) -> None:
    """Drop the triggers `enable` added to TABLES (Tiddly's own writes are logged as before)."""
    _run(database_url, source, names, change_log.disable)
    click.echo(f"change feed triggers off: {', '.join(names)}", err=True)
