"""`tiddly import TABLE FILE` and `tiddly export TABLE [--where JSON] > file.csv`, from the shell.

Both talk to the database directly (no server needed), through the app the server would
build: the same registry checks, the same operations and executor (so an import reaches the
change feed like any other write), batches and one-transaction rule as the HTTP endpoints.
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
from tiddly.errors import ApiError
from tiddly.services import export, reads
from tiddly.services.auth import COMMAND_LINE
from tiddly.services.plan import Import
from tiddly.storage import translate_error
from tiddly.tiddly import create_app
from tiddly.web.api import language

_EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}


def _open(database_url: str | None, source: dict, table: str):
    """The gateway the server would build over this database, and the table's spec."""
    config, db = open_database(database_url, reflect=source["reflect"])
    try:
        chosen = load_schema(db, source)
        if table in chosen.registry.tables and not inspect(db.engine).has_table(table):
            raise click.ClickException(f"the database has no table '{table}' yet: run `tiddly db upgrade` "
                                       "(or `tiddly serve` once) first")
    finally:
        db.dispose()
    gateway = create_app(config.with_(create_tables=False), chosen.metadata, chosen.registry).extensions["tiddly"]
    return gateway


@contextmanager
def _as_cli_errors(gateway):
    """Typed and driver errors become one clear line on stderr; the engine is always released."""
    try:
        yield gateway.registry
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    except DBAPIError as exc:
        raise click.ClickException(str(translate_error(exc))) from None
    finally:
        gateway.db.dispose()


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
    gateway = _open(database_url, source, table)
    with (_as_cli_errors(gateway) as registry, open(file, "rb") as handle,
          click.progressbar(length=os.path.getsize(file), label=table, file=sys.stderr) as bar):
        spec = registry.get(table)
        rows = export.parsed_rows(spec, _advancing(handle, bar), fmt)
        count = gateway.executor.execute(Import(spec, rows), COMMAND_LINE).count
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
    gateway = _open(database_url, source, table)
    with _as_cli_errors(gateway) as registry:
        try:
            parsed_where = json.loads(where) if where else None
        except ValueError:
            raise click.UsageError("--where is not valid JSON") from None
        query = {"where": parsed_where, "orderby": orderby, "select": selected}
        read = language.export(registry.get(table), {k: v for k, v in query.items() if v}, gateway.config, b"")
        names = [c.name for c in read.columns]
        out = sys.stdout.buffer
        for chunk in gateway.executor.stream(read, COMMAND_LINE,
                                             lambda session: export.render(names, reads.stream(session, read), fmt)):
            out.write(chunk)
        out.flush()
