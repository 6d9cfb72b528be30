"""The database matrix every test runs on, and a real `tiddly serve` for end-to-end tests.

SQLite always runs. PostgreSQL and MariaDB/MySQL run when their URLs are set:
    TIDDLY_TEST_POSTGRESQL_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
    TIDDLY_TEST_MYSQL_URL=mysql+pymysql://root@127.0.0.1:3306/test
Without a URL the server suite is skipped, except under CI (CI=true), where a
missing URL fails the run: CI must never skip a database.

Run in parallel (``pytest -n 2``, pytest-xdist), each worker gets databases of its own on
those servers: ``<name>_gw0``, ``<name>_gw1``, ..., made when missing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving import ROOT, LiveServer, free_port  # noqa: F401 - also for the tests that import them from here
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import DropSchema

from tiddly import create_app
from tiddly.config import Config
from tiddly.models import Base
from tiddly.storage import StateHome

SERVER_URL_VARS = {"postgresql": "TIDDLY_TEST_POSTGRESQL_URL", "mysql": "TIDDLY_TEST_MYSQL_URL"}
DATABASES = ["sqlite", "postgresql", "mysql"]


def cannot_run(message: str, suite: str) -> None:
    """Skip what cannot run here; under CI (CI=true) fail instead: CI must run every suite."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: CI must run the {suite} suite, not skip it")
    pytest.skip(message)


def server_url(name: str) -> str:
    url = os.environ.get(SERVER_URL_VARS[name])
    if not url:
        cannot_run(f"{SERVER_URL_VARS[name]} is not set", name)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return url if worker is None else _worker_database(url, worker)


_MADE: set[str] = set()


def _worker_database(url: str, worker: str) -> str:
    """The URL of this worker's own database beside ``url``'s, made when missing."""
    parsed = make_url(url)
    own = parsed.set(database=f"{parsed.database}_{worker}")
    rendered = own.render_as_string(hide_password=False)
    if rendered in _MADE:
        return rendered
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": own.database}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{own.database}"'))
    else:
        engine = create_engine(parsed)
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{own.database}`"))
    engine.dispose()
    _MADE.add(rendered)
    return rendered


@pytest.fixture(scope="session")
def prepared_servers():
    """Server databases already wiped and given the shipped schema, by name."""
    return {}


def _prepare_server(url: str) -> None:
    engine = create_engine(url)
    existing = MetaData()
    existing.reflect(engine)
    existing.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()


def reset_tables(url: str, metadata=Base.metadata) -> None:
    """Empty every table of ``metadata`` and restart its ids."""
    engine = create_engine(url)
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.format_table
        tables = [quote(t) for t in metadata.sorted_tables]
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
            for table in tables:
                conn.execute(text(f"TRUNCATE TABLE {table}"))
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    engine.dispose()


def clean_database(name: str, directory: Path, prepared_servers: dict) -> str:
    """The URL of a clean database ``name`` with the shipped schema's tables empty
    (SQLite: a new file in ``directory``)."""
    if name == "sqlite":
        return f"sqlite:///{directory / 'tiddly.db'}"
    return ready_server(name, prepared_servers)


def ready_server(name: str, prepared_servers: dict) -> str:
    """The server database called ``name`` with the shipped schema's tables empty (and no
    state of a --reflect gateway, kept apart from them)."""
    url = server_url(name)
    if url not in prepared_servers:
        _prepare_server(url)
        prepared_servers[url] = True
    reset_tables(url)
    drop_state_home(url)
    return url


def drop_state_home(url: str) -> None:
    """Drop the schema (PostgreSQL) or database (MariaDB) where a --reflect gateway keeps its own tables."""
    home = StateHome.beside(make_url(url))
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(DropSchema(home.schema, cascade=conn.dialect.name == "postgresql", if_exists=True))
    engine.dispose()


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path, prepared_servers) -> str:
    """A clean database with the shipped schema's tables empty: one per test."""
    return clean_database(request.param, tmp_path, prepared_servers)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'tiddly.db'}"


@pytest.fixture
def config(db_url) -> Config:
    return Config(database_url=db_url)


@pytest.fixture
def app(config):
    application = create_app(config)
    yield application
    application.extensions["tiddly"].db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


# -- a real server ---------------------------------------------------------------

@pytest.fixture
def live_server_factory():
    servers = []

    def start(database_url: str | None, **kwargs) -> LiveServer:
        server = LiveServer(database_url, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
