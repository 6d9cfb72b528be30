"""The ``tiddly`` command: serve, keys, db, openapi, import, export.

The command line builds on the app factory (``tiddly.tiddly.create_app``) and
the services; nothing below it imports the CLI.
"""
from __future__ import annotations

import click
from sqlalchemy.exc import DBAPIError

from tiddly.cli import changes, db, keys, serve, transfer
from tiddly.errors import ApiError
from tiddly.storage import translate_error


class _OneLineErrors(click.Group):
    """A database that cannot be reached or written ends a command with one line saying why
    (``Error: the database is read-only ...``) and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            translated = translate_error(exc)
            if not isinstance(translated, ApiError):
                raise
            raise click.ClickException(translated.message) from None
        except ApiError as exc:
            raise click.ClickException(exc.message) from None


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="tiddly", prog_name="tiddly")
def main() -> None:
    """Tiddly: a REST gateway over SQL tables."""


main.add_command(serve.serve)
main.add_command(keys.keys)
main.add_command(db.openapi_command)
main.add_command(transfer.import_command)
main.add_command(transfer.export_command)
main.add_command(db.db_group)
main.add_command(changes.changes_group)
