"""The ``tiddly`` command: serve, keys, db, openapi, import, export.

The command line builds on the app factory (``tiddly.tiddly.create_app``) and
the services; nothing below it imports the CLI.
"""
from __future__ import annotations

import click

from tiddly.cli import db, keys, serve, transfer


@click.group()
@click.version_option(package_name="tiddly", prog_name="tiddly")
def main() -> None:
    """Tiddly: a REST gateway over SQL tables."""


main.add_command(serve.serve)
main.add_command(keys.keys)
main.add_command(db.openapi_command)
main.add_command(transfer.import_command)
main.add_command(transfer.export_command)
main.add_command(db.db_group)
