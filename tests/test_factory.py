"""The app factory is a plain import: another WSGI app can mount Tiddly under a prefix."""
from __future__ import annotations

from envelope import assert_error, ok
from flask import Blueprint, Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from tiddly.config import Config


def _host_app() -> Flask:
    host = Flask("host")
    pages = Blueprint("pages", __name__)
    pages.add_url_rule("/hello", "hello", lambda: {"hello": "world"})
    host.register_blueprint(pages)
    return host


def test_create_app_mounts_under_a_prefix_beside_another_app(db_url):
    from tiddly import create_app  # the documented import

    gateway = create_app(Config(database_url=db_url))
    host = _host_app()
    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {"/api": gateway})
    client = Client(host)
    try:
        assert client.get("/hello").json == {"hello": "world"}
        created = ok(client.post("/api/books", json={"title": "Dune", "author": "Herbert"}), 201)
        row = ok(client.get(f"/api/books/{created['id']}"))["data"]
        assert row["title"] == "Dune"
        fetched = ok(client.post("/api/books", json={"where": {"title": "Dune"}},
                                 headers={"X-HTTP-Method-Override": "FETCH"}))
        assert [r["author"] for r in fetched["data"]] == ["Herbert"]
        assert ok(client.get("/api/-/health"))["database"]
        # The gateway owns only its prefix; the host's routes are not tables, and vice versa.
        assert client.get("/books").status_code == 404
        assert_error(client.get("/api/hello"), 404, "unknown_table")
    finally:
        gateway.extensions["tiddly"].db.dispose()
