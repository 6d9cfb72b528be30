"""`tiddly import TABLE FILE` and `tiddly export TABLE [--where JSON] > file.csv`: export.py from the shell.

Both talk to the database directly (no server needed), through the same
registry checks, batches and one-transaction rule as the HTTP endpoints.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

import click
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError

from tiddly.cli.options import (
    database_url_option,
    load_schema,
    open_database,
    schema_options,
)
from tiddly.storage import Database, translate_error
from tiddly.errors import ApiError
from tiddly.services import export

_EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}


def _open(database_url: str | None, source: dict, table: str):
    config, db = open_database(database_url, reflect=source["reflect"])
    registry = load_schema(db, source).registry
    if table in registry.tables and not inspect(db.engine).has_table(table):
        db.dispose()
        raise click.ClickException(f"the database has no table '{table}' yet: run `tiddly db upgrade` "
                                   "(or `tiddly serve` once) first")
    return config, db, registry


@contextmanager
def _as_cli_errors(db: Database):
    """Typed and driver errors become one clear line on stderr; the engine is always released."""
    try:
        yield
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    except DBAPIError as exc:
        raise click.ClickException(str(translate_error(exc))) from None
    finally:
        db.dispose()


@click.command("import")
@click.argument("table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]), default=None,
              help="default: from the file's extension (.csv, .ndjson, .jsonl)")
@database_url_option
@schema_options
def import_command(table: str, file: str, fmt: str | None, database_url: str | None, source: dict) -> None:
    """Load FILE into TABLE in one transaction: every row, or none."""
    fmt = fmt or _EXTENSIONS.get(os.path.splitext(file)[1].lower())
    if fmt is None:
        raise click.UsageError("cannot tell the format from the file name: pass --format csv or ndjson")
    _config, db, registry = _open(database_url, source, table)
    with (_as_cli_errors(db), open(file, "rb") as handle,
          click.progressbar(length=os.path.getsize(file), label=table, file=sys.stderr) as bar,
          db.session(write=True) as session):
        count = export.import_rows(session, registry.get(table), _advancing(handle, bar), fmt)
    click.echo(f"imported {count} rows into {table}", err=True)


def _advancing(handle, bar):
    for line in handle:
        bar.update(len(line))
        yield line


@click.command("export")
@click.argument("table")
@click.option("--where", default=None, help='a where object, e.g. \'{"year": {"gte": 1900}}\'')
@click.option("--orderby", default=None, help='e.g. "year desc, title"')
@click.option("--select", "selected", default=None, help="comma-separated columns")
@click.option("--format", "fmt", type=click.Choice(["csv", "ndjson"]), default="csv", show_default=True)
@database_url_option
@schema_options
def export_command(table: str, where: str | None, orderby: str | None, selected: str | None, fmt: str,
                   database_url: str | None, source: dict) -> None:
    """Write TABLE's rows (filtered and ordered, every one) to standard output."""
    config, db, registry = _open(database_url, source, table)
    with _as_cli_errors(db):
        try:
            parsed_where = json.loads(where) if where else None
        except ValueError:
            raise click.UsageError("--where is not valid JSON") from None
        query = {"where": parsed_where, "orderby": orderby, "select": selected}
        stmt, names = export.plan(db.dialect_name, registry.get(table), {k: v for k, v in query.items() if v},
                                  config, b"")
        out = sys.stdout.buffer
        for chunk in export.stream(db.engine, stmt, names, fmt):
            out.write(chunk)
        out.flush()
