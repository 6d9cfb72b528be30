"""API keys for the tests, made as a user makes them: with `tiddly keys create`."""
from __future__ import annotations

from click.testing import CliRunner

from tiddly.cli import main


def keys_cli(db_url: str, *args: str):
    return CliRunner().invoke(main, ["keys", *args, "--database-url", db_url])


def new_key(db_url: str, name: str, scope: str = "write", tables: str | None = None, reflect: bool = False) -> str:
    result = keys_cli(db_url, "create", "--name", name, "--scope", scope, *(["--tables", tables] if tables else []),
                      *(["--reflect"] if reflect else []))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}
