"""The HTTP side of security: who is asking, and CORS.

``install(app, gateway)`` adds two hooks to the Flask app. Before every request: answer a
CORS preflight, or find the caller (``auth.authenticate``: an API key, a login token, or
open mode) with one lookup in the database, as ``g.principal``. After every request: the
CORS headers for an allowed origin. What the caller may do is not decided here, from a
verb or a header, but where the request's operation runs (``services/execute.py``, from
what the operation reads and writes).
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, g, request

from tiddly.config import Config
from tiddly.errors import Forbidden
from tiddly.services import auth

# Routes that answer before anyone is known (by endpoint, so another route that happens to match
# the same path with another verb is not public): the health checks and the login itself.
PUBLIC_ENDPOINTS = frozenset({"health", "cpap_health", "login"})
# The web page's shell and assets hold no data and must load before the person has given a key;
# its data calls go through the API like any other client's.
PUBLIC_BLUEPRINTS = frozenset({"ui"})
CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, FETCH, QUERY, OPTIONS"
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, X-HTTP-Method-Override"
CORS_EXPOSED_HEADERS = "Allow, ETag, WWW-Authenticate"
CORS_MAX_AGE_S = 600

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


def install(app: Flask, gateway) -> None:
    login_users = _login_users(gateway)
    app.before_request(lambda: _before_request(gateway, login_users))
    app.after_request(lambda response: _add_cors_headers(gateway, response))


def _before_request(gateway, login_users) -> Response | None:
    if _is_preflight():
        return _preflight(gateway)
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
        return None
    g.principal = auth.authenticate(gateway.db, _authorization(gateway), gateway.config.open_mode_allowed,
                                    login_users)
    return None


def _authorization(gateway) -> str | None:
    """The Authorization header, or a dialect's key header (PostgREST's apikey) as a bearer key."""
    header = request.headers.get("Authorization")
    dialect = gateway.dialects.get(request.blueprint) if header is None else None
    key = request.environ.get(dialect.environ_key) if dialect is not None else None
    return f"Bearer {key}" if key else header


def login_users(gateway):
    """The exposed user table login tokens belong to (None: no logins)."""
    return _login_users(gateway)


def origin_allowed(config: Config, origin: str | None) -> bool:
    return _origin_allowed(config, origin)


def _login_users(gateway):
    users = gateway.registry.tables.get("user")
    return users if users is not None and {"id", "email"} <= set(users.columns) else None


# -- CORS --------------------------------------------------------------------------

def _is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def _origin_allowed(config: Config, origin: str | None) -> bool:
    allowed = config.cors_origin_list
    return origin is not None and ("*" in allowed or origin.rstrip("/") in allowed)


def _preflight(gateway) -> Response:
    origin = request.headers["Origin"]
    if not _origin_allowed(gateway.config, origin):
        raise Forbidden("this origin may not call the gateway from a browser (see TIDDLY_CORS_ORIGINS)")
    dialect = gateway.dialects.get(request.blueprint)
    return Response(status=204, headers={
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS + (dialect.request_headers if dialect else ""),
        "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
    })


def _add_cors_headers(gateway, response: Response) -> Response:
    config = gateway.config
    origin = request.headers.get("Origin")
    if _origin_allowed(config, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        dialect = gateway.dialects.get(request.blueprint)
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS + (
            dialect.exposed_headers if dialect else "")
    if config.cors_origin_list:
        response.vary.add("Origin")
    return response
