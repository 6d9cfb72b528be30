"""Tiddly's HTTP edge: the app factory.

``create_app(config)`` builds the Flask app: the ``Gateway`` every way in shares (settings,
the database, the registry built once, the executor every operation goes through), the
meta routes under ``/-/``, one place that turns any error into the error envelope, and the
ways in: Tiddly's own API (``web/api``: the dynamic route ``/<table>``), the PostgREST
dialect (``web/postgrest``), the web page (``web/ui``) and, when its tables are served, the
patient monitor (``monitor``), which registers its own routes and operations. The command
line (``tiddly.cli``) builds on this module, never the reverse; ``tiddly serve`` runs it
under granian (or gunicorn).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote_to_bytes

from flask import Flask, Response, g, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from tiddly import jsonio, monitor
from tiddly.config import Config
from tiddly.errors import ApiError, BadQuery, BadValue, NotFound
from tiddly.models import Base, internal_tables
from tiddly.registry import Registry
from tiddly.services import access, auth, cursor
from tiddly.services.changes import Feed
from tiddly.services.execute import Executor
from tiddly.storage import Database
from tiddly.storage import changes as change_log
from tiddly.web import api, feed, guard, postgrest, realtime, ui
from tiddly.web.api import openapi
from tiddly.web.guard import Dialect

log = logging.getLogger("tiddly")

META_ROUTES = ("/-/health", "/-/tables", "/-/openapi.json", "/-/login", "/-/whoami", "/-/ui/", "/-/changes")
_HTTP_CODES = {400: "bad_json", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               415: "unsupported_media_type"}


@dataclass
class Gateway:
    """What every way in shares: settings, the database, the exposed tables (built once, never
    written while requests run), the executor every operation runs through, and what
    extensions registered: a table they serve themselves on a verb (``table_handlers``:
    ``(table, verb) -> handler(gateway, view, spec)``) and the dialects mounted as blueprints
    (``dialects``: the key header their clients send, their CORS headers)."""
    config: Config
    db: Database
    registry: Registry
    executor: Executor
    table_handlers: dict[tuple[str, str], Callable] = field(default_factory=dict)
    dialects: dict[str, Dialect] = field(default_factory=dict)
    known_keys: auth.KnownKeys = field(default_factory=auth.KnownKeys)  # this worker's, see auth.KnownKeys
    _cursor_key: bytes | None = None

    def view(self, principal) -> Registry:
        """The registry as ``principal`` sees it (a key limited to some tables: only those)."""
        return access.view(self.registry, principal)

    @property
    def cursor_key(self) -> bytes:
        """Signs keyset cursors (cursor.py). Loaded on first use, not at start, so the app
        starts, and /-/health answers 503, while the database is down."""
        if self._cursor_key is None:
            self._cursor_key = cursor.load_key(self.db, self.config.secret)
        return self._cursor_key


def create_app(config: Config | None = None, metadata=None, registry: Registry | None = None) -> Flask:
    config = config or Config.from_env()
    metadata = metadata if metadata is not None else Base.metadata
    reflected = bool(metadata.info.get("reflected"))
    # A reflected database is someone else's: it is never created, and Tiddly's own state lives apart.
    db = Database.for_config(config, state_apart=reflected)
    if config.create_tables and not reflected:
        db.create_all(metadata)
    if config.create_tables:  # the gateway's own state (API keys, login tokens), whatever the schema
        db.create_state(Base.metadata, internal_tables())
        _create_change_log(db)
    registry = (registry or Registry.from_metadata(metadata)).with_string_limit(config.max_string_length) \
        .add_relations(Base.registry.mappers)
    gateway = Gateway(config, db, registry, Executor(db, config))
    changes = Feed(db, registry, config)  # the change feed: logged in every write's transaction
    gateway.executor.on_changes(in_transaction=changes.record, after_commit=changes.woken)

    app = Flask("tiddly")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["tiddly"] = gateway
    app.add_url_rule("/-/health", "health", lambda: _health(gateway))
    app.add_url_rule("/-/tables", "tables", lambda: _ok({"data": gateway.view(g.principal).describe()}))
    app.add_url_rule("/-/openapi.json", "openapi", lambda: _openapi(gateway))
    app.add_url_rule("/-/login", "login", lambda: _login(gateway), methods=["POST"])
    app.add_url_rule("/-/whoami", "whoami", lambda: _ok({"data": g.principal.describe()}))
    ui.register(app)  # the web page at /-/ui/, a client of the routes above
    app.add_url_rule("/-/<path:rest>", "meta_unknown", _unknown_meta_route, methods=api.COLLECTION_VERBS)
    api.register(app, gateway)  # Tiddly's own API: /<table>, /<table>/<pk>
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_refuse_bytes_that_are_not_utf8)
    guard.install(app, gateway)  # who is asking (API keys, login tokens, open mode), CORS: see guard.py
    monitor.register(app, gateway)  # the patient monitor, when its tables are served
    postgrest.install(app, gateway)  # PostgREST's grammar at config.postgrest_path (web/postgrest)
    feed.install(app, changes)  # GET /-/changes, a native handler (web/feed.py)
    realtime.install(app, gateway)  # Supabase Realtime's WebSocket over the feed (web/realtime)
    return app


def _create_change_log(db: Database) -> None:
    """The change feed's log; a database that is down now gets it at its first write (the app
    starts all the same, as /-/health says)."""
    try:
        change_log.create(db)
    except (ApiError, DBAPIError) as exc:
        log.warning("the change log could not be made now: %s", getattr(exc, "message", exc))


# -- responses -----------------------------------------------------------------

_ok = api.ok


def _error(status: int, code: str, message: str, details: dict | None = None,
           headers: dict | None = None) -> Response:
    body = {"status": "error", "error": message, "code": code}
    if details:
        body["details"] = details
    return Response(jsonio.dumps(body), status, mimetype="application/json", headers=headers)


def _api_error(exc: ApiError) -> Response:
    return _error(exc.status, exc.code, exc.message, exc.details, exc.headers or None)


def _http_error(exc: HTTPException) -> Response:
    code = _HTTP_CODES.get(exc.code or 500, "http_error")
    # werkzeug lists the allowed verbs in set order, which differs between processes: sort them.
    headers = {k: ", ".join(sorted(v.split(", "))) for k, v in exc.get_headers() if k.lower() == "allow"}
    messages = {404: "no such route", 413: "the request body is too large",
                405: f"{request.method} is not allowed on {request.path}"}
    return _error(exc.code or 500, code, messages.get(exc.code, exc.description or exc.name), None, headers)


def _unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error(500, "internal_error", "an internal error occurred; it has been logged")


def _refuse_bytes_that_are_not_utf8() -> None:
    """A URL whose percent-escapes are not UTF-8 (``?title=eq.%ff``) is a 400, not a filter on
    U+FFFD, which werkzeug would have put in their place."""
    try:
        unquote_to_bytes(request.query_string.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadQuery("the query string holds percent-escapes that are not UTF-8 text") from None
    if "\ufffd" in request.path:  # what the server put for bytes that were not UTF-8
        raise BadQuery("the path holds percent-escapes that are not UTF-8 text")


# -- meta routes ---------------------------------------------------------------

def _health(gateway: Gateway) -> Response:
    gateway.db.ping()
    return _ok({"database": gateway.db.dialect_name, **gateway.db.health()})


def _unknown_meta_route(rest: str) -> Response:
    # "/-/" belongs to Tiddly itself; no table can live there.
    raise NotFound(f"no route /-/{rest}; Tiddly's own routes are {', '.join(META_ROUTES)}")


def _login(gateway: Gateway) -> Response:
    body = api.read_body()
    if not isinstance(body, dict) or set(body) != {"email", "password"}:
        raise BadValue('POST /-/login takes {"email": "...", "password": "..."}')
    # Three scopes: the password's scrypt holds no transaction, no connection and no write lock.
    with gateway.db.session(latest=True) as session:  # a password just changed holds at once
        attempt = auth.find_login(session, gateway.registry.get("user"), body["email"], body["password"])
    user_id = auth.check_login(attempt, body["password"])
    with gateway.db.session(write=True) as session:
        token = auth.issue_token(session, user_id, gateway.config.login_token_ttl_s)
    return _ok(token)


def _openapi(gateway: Gateway) -> Response:
    return Response(jsonio.dumps(openapi_document(gateway, gateway.view(g.principal))), 200,
                    mimetype="application/json")


def openapi_document(gateway: Gateway, registry: Registry | None = None) -> dict:
    """The OpenAPI document of this gateway (or of some of its tables); bearer security while keys are required."""
    return openapi.document(registry or gateway.registry, gateway.config, bearer=_keys_on(gateway))


def _keys_on(gateway: Gateway) -> bool:
    if not gateway.config.open_mode_allowed:
        return True
    try:
        with gateway.db.session() as session:
            return auth.count_active_keys(session) > 0
    except (ApiError, DBAPIError):  # no key table yet: no keys
        return False
