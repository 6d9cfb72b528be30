"""The HTTP side of security: who is asking, may they do this, and CORS.

``install(app, gateway)`` adds two hooks to the Flask app. Before every request:
answer a CORS preflight, or find the caller (``auth.authenticate``: an API key, a
login token, or open mode) with one lookup in the database, and check the
request against the caller's scope and tables (``auth.authorize``). After every
request: the CORS headers for an allowed origin. The rules themselves live in
``auth.py``; this module only reads them off the request.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, g, request

from tiddly.config import Config
from tiddly.errors import Forbidden
from tiddly.registry import Registry
from tiddly.services import auth

PUBLIC_PATHS = frozenset({"/-/health", "/health", "/-/login"})
# The web page's shell and assets hold no data and must load before the person has given a key;
# its data calls go through the API like any other client's.
PUBLIC_BLUEPRINTS = frozenset({"ui"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "FETCH", "QUERY"})
QUERY_OVERRIDES = frozenset({"FETCH", "QUERY"})
CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, FETCH, QUERY, OPTIONS"
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, X-HTTP-Method-Override"
CORS_EXPOSED_HEADERS = "Allow, ETag, WWW-Authenticate"
CORS_MAX_AGE_S = 600

# Routes whose verb or path does not tell what they need: endpoint -> (scope, every table it uses).
# Any other route needs read for a read verb and write otherwise, on the table in its path.
ROUTE_ACCESS: dict[str, tuple[str, tuple[str, ...]]] = {}
# The routes that read a POST with X-HTTP-Method-Override: FETCH or QUERY as that query (and
# refuse any other override). On every other route the header is not read, so it renames nothing.
QUERY_OVERRIDE_ENDPOINTS: set[str] = set()


@dataclass(frozen=True)
class Dialect:
    """What a dialect mounted as a blueprint (web/postgrest) adds to the guard: the header its
    clients may send the key in when there is no Authorization, and the request and response
    headers browsers must be allowed to send and read."""
    key_header: str
    request_headers: str
    exposed_headers: str

    @property
    def environ_key(self) -> str:
        return "HTTP_" + self.key_header.upper().replace("-", "_")


DIALECTS: dict[str, Dialect] = {}  # blueprint name -> Dialect


def install(app: Flask, gateway) -> None:
    login_users = _login_users(gateway)
    app.before_request(lambda: _before_request(gateway, login_users))
    app.after_request(lambda response: _add_cors_headers(gateway.config, response))


def _before_request(gateway, login_users) -> Response | None:
    if _is_preflight():
        return _preflight(gateway.config)
    if request.path in PUBLIC_PATHS or request.blueprint in PUBLIC_BLUEPRINTS:
        return None
    principal = auth.authenticate(gateway.db, _authorization(), gateway.config.open_mode_allowed, login_users)
    g.principal = principal
    scope, tables = _access()
    for table in tables or (None,):
        auth.authorize(principal, scope, table)
    return None


def _authorization() -> str | None:
    """The Authorization header, or a dialect's key header (PostgREST's apikey) as a bearer key."""
    header = request.headers.get("Authorization")
    dialect = DIALECTS.get(request.blueprint) if header is None else None
    key = request.environ.get(dialect.environ_key) if dialect is not None else None
    return f"Bearer {key}" if key else header


def _login_users(gateway):
    users = gateway.registry.tables.get("user")
    return users if users is not None and {"id", "email"} <= set(users.columns) else None


def _access() -> tuple[str, tuple[str, ...]]:
    if request.endpoint in ROUTE_ACCESS:
        return ROUTE_ACCESS[request.endpoint]
    method = request.method
    if method == "POST" and request.endpoint in QUERY_OVERRIDE_ENDPOINTS:
        override = request.headers.get("X-HTTP-Method-Override", "").upper()
        method = override if override in QUERY_OVERRIDES else method
    table = (request.view_args or {}).get("table")
    return ("read" if method in READ_METHODS else "write"), (table,) if table is not None else ()


def visible_tables(registry: Registry) -> Registry:
    """The tables the caller may use (``auth.visible_tables``)."""
    return auth.visible_tables(getattr(g, "principal", None), registry)


# -- CORS --------------------------------------------------------------------------

def _is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def _origin_allowed(config: Config, origin: str | None) -> bool:
    allowed = config.cors_origin_list
    return origin is not None and ("*" in allowed or origin.rstrip("/") in allowed)


def _preflight(config: Config) -> Response:
    origin = request.headers["Origin"]
    if not _origin_allowed(config, origin):
        raise Forbidden("this origin may not call the gateway from a browser (see TIDDLY_CORS_ORIGINS)")
    dialect = DIALECTS.get(request.blueprint)
    return Response(status=204, headers={
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS + (dialect.request_headers if dialect else ""),
        "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
    })


def _add_cors_headers(config: Config, response: Response) -> Response:
    origin = request.headers.get("Origin")
    if _origin_allowed(config, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        dialect = DIALECTS.get(request.blueprint)
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS + (
            dialect.exposed_headers if dialect else "")
    if config.cors_origin_list:
        response.vary.add("Origin")
    return response
