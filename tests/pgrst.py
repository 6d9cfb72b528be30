"""Serving an app over real HTTP to the PostgREST clients, for the test modules of the
PostgREST dialect (tests/test_postgrest*.py)."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from postgrest import APIError, SyncPostgrestClient
from sqlalchemy import MetaData, create_engine, delete, text
from werkzeug.serving import make_server

from tiddly import create_app, schema
from tiddly.config import Config
from tiddly.models import ApiKey, LoginToken
from tiddly.registry import Registry
from tiddly.services import auth


class Served:
    """An app on a real HTTP server in this process, and its URL."""

    def __init__(self, config: Config, metadata=None, registry=None):
        self.app = create_app(config, metadata, registry)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, **headers) -> SyncPostgrestClient:
        return SyncPostgrestClient(self.url + "/rest/v1", headers={"Accept": "application/json", **headers})

    def key(self, name: str, scope: str, tables: list[str] | None = None) -> str:
        with self.app.extensions["tiddly"].db.session(write=True) as session:
            return auth.create_key(session, name, scope, tables)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        db = self.app.extensions["tiddly"].db
        with db.session(write=True) as session:  # later tests on this database expect open mode
            session.execute(delete(LoginToken))
            session.execute(delete(ApiKey))
        db.dispose()


@contextmanager
def serving(db_url: str, metadata: MetaData):
    """``metadata``'s tables, made afresh in the test database and served; dropped afterwards."""
    engine = create_engine(db_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    server = Served(Config(database_url=db_url), metadata, Registry.from_metadata(metadata))
    try:
        yield server
    finally:
        server.stop()
        metadata.drop_all(engine)
        engine.dispose()


@contextmanager
def reflected(db_url: str, statements: list[str], tables: list[str]):
    """Tables made by ``statements`` (plain SQL in the database's own words; ``tables``, dropped
    first and afterwards, in that order), reflected as ``tiddly serve --reflect`` reflects them,
    and served."""
    engine = create_engine(db_url)
    _drop(engine, tables)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    found = schema.reflected(engine, tables=tables)
    server = Served(Config(database_url=db_url), found.metadata, found.registry)
    try:
        yield server
    finally:
        server.stop()
        _drop(engine, tables)
        engine.dispose()


def _drop(engine, tables: list[str]) -> None:
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        for name in tables:
            conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)}"))


def error_of(call) -> APIError:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value


