"""`tiddly keys create|list|revoke`: API keys, straight against the database (no server needed)."""
from __future__ import annotations

from contextlib import contextmanager

import click
from sqlalchemy import inspect

from tiddly import migrate
from tiddly.cli import options
from tiddly.errors import ApiError, UniqueViolation
from tiddly.models import Base, internal_tables
from tiddly.registry import Registry
from tiddly.services import auth
from tiddly.storage import CannotOpen, Database


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (the database keeps only their hashes)."""


def _reflect_option(command):
    return click.option("--reflect", is_flag=True,
                        help="for a database served with --reflect, whose keys live apart from its tables")(command)


@contextmanager
def _keys_session(database_url: str | None, reflect: bool):
    _config, db = options.open_database(database_url, reflect)
    try:
        if not reflect:
            _refuse_someone_elses_tables(db)
        db.create_state(Base.metadata, internal_tables())
        with db.session(write=True) as session:
            yield db, session
    except (ApiError, CannotOpen) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    finally:
        db.dispose()


def _refuse_someone_elses_tables(db: Database) -> None:
    """Without --reflect the keys go beside the tables: never into a database of others' tables."""
    if migrate.state(db.engine).someone_elses:
        raise click.ClickException(
            "this database holds tables Tiddly did not make; if you serve it with --reflect, add --reflect "
            "here too (its keys live apart from its tables); with --models, serve it once first")


@keys.command("create")
@click.option("--name", required=True, help="a unique name to list and revoke the key by")
@click.option("--scope", required=True, type=click.Choice(auth.SCOPES), help="read < write < admin")
@click.option("--tables", default=None, help="comma-separated tables the key may use (default: every table)")
@options.database_url_option
@_reflect_option
def keys_create(name: str, scope: str, tables: str | None, database_url: str | None, reflect: bool) -> None:
    """Create a key and print it, once: only its hash is stored."""
    names = None if tables is None else [t.strip() for t in tables.split(",") if t.strip()]
    try:
        with _keys_session(database_url, reflect) as (db, session):
            _check_table_names(db, names or [])
            secret = auth.create_key(session, name, scope, names)
    except click.ClickException as exc:
        if isinstance(exc.__context__, UniqueViolation):
            raise click.ClickException(f"a key named {name!r} already exists (revoked keys keep their names)")
        raise
    click.echo(secret)
    click.echo(f"key {name!r} ({scope}) created; copy it now, it cannot be shown again", err=True)


def _check_table_names(db: Database, names: list[str]) -> None:
    known = set(inspect(db.engine).get_table_names()) | set(Registry.from_metadata(Base.metadata).tables)
    known -= {t.name for t in internal_tables()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.ClickException(f"no table named {', '.join(map(repr, unknown))}; "
                                   f"known: {', '.join(sorted(known))}")


@keys.command("list")
@options.database_url_option
@_reflect_option
def keys_list(database_url: str | None, reflect: bool) -> None:
    """List every key: name, scope, tables, created, and whether it is revoked."""
    with _keys_session(database_url, reflect) as (_db, session):
        rows = auth.list_keys(session)
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M:%S}" if row["revoked_at"] else "active"
        click.echo(f"{row['name']}\t{row['scope']}\t{row['tables'] or '*'}\t"
                   f"created {row['created_at']:%Y-%m-%d %H:%M:%S}\t{state}")
    if not rows:
        click.echo("no API keys: the gateway runs in open mode on loopback", err=True)


@keys.command("revoke")
@click.argument("name")
@options.database_url_option
@_reflect_option
def keys_revoke(name: str, database_url: str | None, reflect: bool) -> None:
    """Revoke a key: every worker refuses it from the next request on."""
    with _keys_session(database_url, reflect) as (_db, session):
        auth.revoke_key(session, name)
    click.echo(f"key {name!r} revoked", err=True)

