"""`tiddly serve`: check the database and the schema once, then run the app under granian (or gunicorn)."""
from __future__ import annotations

import ipaddress
import socket

import click

from tiddly.cli import options
from tiddly.services import auth, cursor
from tiddly.storage import Database
from tiddly.tiddly import create_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="worker processes")
@click.option("--threads", default=4, show_default=True, type=int, help="threads per worker")
@click.option("--connections", default=4096, show_default=True, type=click.IntRange(16),
              help="connections (requests, streams) each worker holds at once (granian)")
@click.option("--insecure", is_flag=True, help="serve without API keys even on an address other machines can reach")
@click.option("--access-log", metavar="FILE", default=None,
              help="append a line per request to FILE (- for stderr); default: no access log")
@click.option("--server", "http_server", type=click.Choice(["granian", "gunicorn"]), default="granian",
              show_default=True, help="the HTTP server (gunicorn: its gthread worker)")
@options.database_url_option
@click.option("--read-replica", "read_replicas", multiple=True, metavar="URL",
              help="a PostgreSQL streaming standby reads may go to; repeat for more "
                   "(env TIDDLY_READ_REPLICAS, comma-separated)")
@click.option("--replica-max-lag", type=float, default=None, metavar="SECONDS",
              help="a replica further behind the primary answers no read (env TIDDLY_REPLICA_MAX_LAG_S; default 5)")
@click.option("--direct-database-url", default=None, metavar="URL",
              help="the primary with no pooler between, for what outlives a transaction (LISTEN); "
                   "env TIDDLY_DIRECT_DATABASE_URL")
@options.schema_options
def serve(host: str, port: int, workers: int, threads: int, database_url: str | None, source: dict,
          insecure: bool, access_log: str | None, http_server: str, connections: int,
          read_replicas: tuple[str, ...], replica_max_lag: float | None, direct_database_url: str | None) -> None:
    """Serve the gateway with granian (or gunicorn), a production HTTP server."""
    from tiddly.cli.server import (  # the HTTP server is imported only to serve
        address,
        check_access_log,
        check_can_listen,
        run,
    )

    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1] is ::1
    check_can_listen(host, port)
    check_access_log(access_log)
    config, db = options.open_database(database_url, reflect=source["reflect"],
                                       read_replicas=",".join(read_replicas) or None,
                                       replica_max_lag_s=replica_max_lag, direct_database_url=direct_database_url)
    # Once, here, so workers do not race to create tables; the workers inherit the schema.
    chosen = options.prepare_schema(db, source)
    db.check_writable()  # a read-only SQLite file or folder, or a full disk: say so now, in one line
    cursor.load_key(db, config.secret)  # stored now, so a read replica has it should the primary go down
    try:
        open_allowed, mode = _auth_mode(db, host, insecure)
    finally:
        db.dispose()
    safe_url = db.engine.url.render_as_string(hide_password=True)
    count = len(chosen.registry.tables)
    click.echo(f"Tiddly: {count} table{'' if count == 1 else 's'} ({chosen.origin}) from {safe_url} "
               f"on http://{address(host, port)} ({http_server}, {workers} workers x {threads} threads)", err=True)
    if db.state_home:
        click.echo(f"Tiddly: its own tables (API keys, login tokens, idempotency keys, its secret) are in "
                   f"{db.state_home.place}, apart from the database's", err=True)
    click.echo(f"Tiddly: auth: {mode}", err=True)
    for replica in db.replicas.replicas:
        click.echo(f"Tiddly: reads may go to the read replica {replica.name} while it is within "
                   f"{config.replica_max_lag_s:g} s of the primary", err=True)
    app_config = config.with_(create_tables=False, open_mode_allowed=open_allowed)
    run(lambda: create_app(app_config, chosen.metadata, chosen.registry), host, port, workers, threads, access_log,
        server=http_server, limits=_limits(app_config), connections=connections)


def _limits(config):
    from tiddly.cli.admission import Limits

    return Limits(body_limit=config.max_body_bytes, body_timeout_s=config.body_timeout_s,
                  per_client=config.max_pending_bodies_per_client, header_bytes=config.max_header_bytes,
                  postgrest_path=config.postgrest_path)


def _auth_mode(db: Database, host: str, insecure: bool) -> tuple[bool, str]:
    """May requests go without a key while none exists, and the banner line that says so."""
    with db.session() as session:
        active = auth.count_active_keys(session)
    loopback = _is_loopback(host)
    if active:
        return loopback or insecure, f"API keys required ({active} active); see docs/security.md"
    if loopback:
        return True, ("OPEN: no API key exists, so requests need none while bound to loopback; "
                      "`tiddly keys create` turns keys on")
    if insecure:
        return True, (f"OPEN and INSECURE (--insecure): no API key exists and {host} is reachable from "
                      "other machines; anyone who reaches it can read and change every table")
    raise click.ClickException(
        f"refusing to serve on {host} without API keys: anyone who can reach it could read and change every "
        "table. Create a key (tiddly keys create --name NAME --scope write), bind to 127.0.0.1, "
        "or pass --insecure.")


def _is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0].split("%")[0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


# -- tiddly keys -------------------------------------------------------------------
