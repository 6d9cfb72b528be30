"""Tiddly's HTTP edge: the app factory and the dynamic endpoint.

``create_app(config)`` builds the Flask app: one dynamic route ``/<table>`` (and
``/<table>/<pk>``) whose verbs map to the table service (``services/crud.py``),
the meta routes under ``/-/``, and one place that turns any error into the error
envelope. The command line (``tiddly.cli``) builds on this module, never the
reverse; ``tiddly serve`` runs it under granian (or gunicorn).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

from flask import Flask, Response, g, has_app_context, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from tiddly import jsonio
from tiddly.config import Config
from tiddly.storage import Database
from tiddly.errors import (
    ApiError,
    BadQuery,
    BadValue,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)
from tiddly.models import Base, Patient, PatientReading, internal_tables
from tiddly.monitor import cpap, patients
from tiddly.registry import Registry, TableSpec
from tiddly.services import (
    auth,
    crud,
    cursor,
    export,
    idempotency,
    include,
    nested,
    openapi,
    pages,
    upsert,
)
from tiddly.services.query import query_from_args
from tiddly.web import conditional, guard, postgrest, ui
from tiddly.web.body import raw_body

log = logging.getLogger("tiddly")

READ_VERBS = ("GET", "FETCH", "QUERY")
COLLECTION_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "FETCH", "QUERY")
ROW_VERBS = ("GET", "HEAD", "PUT", "PATCH", "DELETE")
QUERY_OVERRIDES = ("FETCH", "QUERY")
META_ROUTES = ("/-/health", "/-/tables", "/-/openapi.json", "/-/login", "/-/whoami", "/-/ui/")
_HTTP_CODES = {400: "bad_json", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               415: "unsupported_media_type"}


@dataclass
class Gateway:
    """What a request needs: settings, the database, and the exposed tables."""
    config: Config
    db: Database
    registry: Registry
    _cursor_key: bytes | None = None

    def session(self, write: bool = False):
        """``db.session`` for this request's caller: its reads see its own writes (read replicas)."""
        principal = g.get("principal") if has_app_context() else None  # a streamed body runs after the request
        return self.db.session(write=write, writer=principal.writer if principal is not None else None)

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
    registry = (registry or Registry.from_metadata(metadata)).with_string_limit(config.max_string_length)
    gateway = Gateway(config, db, registry)

    app = Flask("tiddly")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["tiddly"] = gateway
    gateway.registry.add_relations(Base.registry.mappers)
    app.add_url_rule("/-/health", "health", lambda: _health(gateway))
    app.add_url_rule("/-/tables", "tables", lambda: _ok({"data": guard.visible_tables(gateway.registry).describe()}))
    app.add_url_rule("/-/openapi.json", "openapi", lambda: _openapi(gateway))
    app.add_url_rule("/-/login", "login", lambda: _login(gateway), methods=["POST"])
    app.add_url_rule("/-/whoami", "whoami", lambda: _ok({"data": g.principal.describe()}))
    ui.register(app)  # the web page at /-/ui/, a client of the routes above
    app.add_url_rule("/-/<path:rest>", "meta_unknown", _unknown_meta_route, methods=COLLECTION_VERBS)
    app.add_url_rule("/<table>", "collection", lambda table: _collection(gateway, table),
                     methods=COLLECTION_VERBS, strict_slashes=False)  # /books/ too; Flask adds OPTIONS itself
    guard.QUERY_OVERRIDE_ENDPOINTS.add("collection")  # _effective_method reads the override there
    app.add_url_rule("/<table>/<path:pk>", "row", lambda table, pk: _row(gateway, table, pk),
                     methods=ROW_VERBS)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    guard.install(app, gateway)  # API keys, login tokens, open mode, CORS: see guard.py
    cpap.register(app, gateway)  # the original CPAP server's routes, for its clients
    postgrest.install(app, gateway)  # PostgREST's grammar at config.postgrest_path (web/postgrest)
    return app


# -- responses -----------------------------------------------------------------

def _ok(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(jsonio.dumps({"status": "success", **payload}), status, mimetype="application/json",
                    headers=headers)


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


# -- meta routes ---------------------------------------------------------------

def _health(gateway: Gateway) -> Response:
    gateway.db.ping()
    return _ok({"database": gateway.db.dialect_name, **gateway.db.health()})


def _unknown_meta_route(rest: str) -> Response:
    # "/-/" belongs to Tiddly itself; no table can live there.
    raise NotFound(f"no route /-/{rest}; Tiddly's own routes are {', '.join(META_ROUTES)}")


def _login(gateway: Gateway) -> Response:
    body = _read_body()
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
    return Response(jsonio.dumps(openapi_document(gateway, guard.visible_tables(gateway.registry))), 200,
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


# -- the dynamic endpoint --------------------------------------------------------

def _effective_method() -> str:
    override = request.headers.get("X-HTTP-Method-Override")
    if override is None:
        return request.method
    if request.method != "POST" or override.upper() not in QUERY_OVERRIDES:
        raise BadQuery("X-HTTP-Method-Override turns a POST into FETCH or QUERY, nothing else")
    return override.upper()


def _allowed(spec: TableSpec, method: str, route_verbs: tuple[str, ...], also: tuple[str, ...] = ()) -> None:
    allowed = [v for v in route_verbs if v in spec.verbs or v in also or v == "HEAD" and "GET" in spec.verbs]
    if method not in allowed:
        raise MethodNotAllowed(f"{method} is not allowed on /{spec.name}", allow=allowed + ["OPTIONS"])


def _collection(gateway: Gateway, table: str) -> Response:
    spec = gateway.registry.get(table)
    method = _effective_method()
    special = tuple(verb for table, verb in _SPECIAL_HANDLERS if table is spec.table)
    _allowed(spec, "GET" if method == "HEAD" else method, COLLECTION_VERBS, also=special)
    handler = (_SPECIAL_HANDLERS.get((spec.table, method))
               or _COLLECTION_HANDLERS[method if method != "HEAD" else "GET"])
    if method in READ_VERBS and export.wanted_format(request.accept_mimetypes):
        return _export(gateway, spec, method)
    write = method not in READ_VERBS + ("HEAD",)
    key = _idempotency_key(gateway) if write else None
    with gateway.session(write=write) as session:
        return _respond(gateway, session, key, spec.name, lambda: handler(gateway, spec, session))


def _row(gateway: Gateway, table: str, raw_pk: str) -> Response:
    spec = gateway.registry.get(table)
    method = "GET" if request.method == "HEAD" else request.method
    _allowed(spec, method, ROW_VERBS)
    pk = spec.pk_from_path(raw_pk)
    key = _idempotency_key(gateway) if method != "GET" else None
    with gateway.session(write=method != "GET") as session:
        return _respond(gateway, session, key, spec.name,
                        lambda: _ROW_HANDLERS[method](gateway, spec, session, pk))


def _idempotency_key(gateway: Gateway) -> str | None:
    """The write's Idempotency-Key, if any (checked), after clearing expired keys."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    key = idempotency.check_key(raw)
    _purge_expired_keys(gateway)
    return key


def _purge_expired_keys(gateway: Gateway) -> None:
    # In transactions of their own, before the write's: the purge holds no lock the write waits on.
    with gateway.db.session() as session:
        expired = idempotency.expired_keys(session)
    if expired:
        with gateway.db.session(write=True) as session:
            idempotency.delete_expired(session, expired)


def _respond(gateway: Gateway, session, key: str | None, table: str,
             run: Callable[[], tuple]) -> Response:
    """Run the handler; under an Idempotency-Key, replay the key's first response instead.

    The key is claimed and its response stored in the write's own transaction,
    so both commit together or neither does.
    """
    if key is None:
        return _answer(table, *run())
    fingerprint = idempotency.fingerprint(request.method, request.full_path, request.get_data())
    stored = idempotency.claim(session, key, fingerprint, gateway.config.idempotency_ttl_s)
    if stored is not None:
        response = Response(stored.body, stored.status, mimetype="application/json",
                            headers={"Idempotent-Replayed": "true"})
        if stored.status == 201:
            _locate(response, table, jsonio.loads(stored.body).get("id"))
        return response
    response = _answer(table, *run())
    idempotency.record(session, key, response.status_code, response.get_data())
    return response


def _answer(table: str, payload: dict, status: int, headers: dict | None = None) -> Response:
    response = _ok(payload, status, headers)
    if status == 201:
        _locate(response, table, payload.get("id"))
    return response


def _locate(response: Response, table: str, pk) -> None:
    """A 201 that created one row says where it lives: ``Location: /<table>/<pk>``."""
    if pk is None:  # a bulk insert or an import: several rows
        return
    parts = pk if isinstance(pk, (list, tuple)) else [pk]
    path = ",".join(quote(p.isoformat() if hasattr(p, "isoformat") else str(p), safe="") for p in parts)
    response.headers["Location"] = f"{request.script_root}/{quote(table, safe='')}/{path}"


def _read_body(required: bool = True) -> Any:
    raw = raw_body()
    if not raw.strip():
        if required:
            raise BadValue(f"{request.method} needs a JSON body")
        return None
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"the body must be JSON (Content-Type: application/json), got {mimetype or 'none'!r}")
    return jsonio.parse_body(raw)


def _query_collection(gateway, spec, session):
    raw = query_from_args(request.args) if request.method in ("GET", "HEAD") else _read_body(required=False)
    if request.method not in ("GET", "HEAD") and request.args:
        raise BadQuery("send the query in the body, not the query string")
    _authorize_related(spec, include.requested_names(raw), "read")
    visible = guard.visible_tables(gateway.registry)
    return pages.fetch_page(session, spec, raw, gateway.config, visible, gateway.cursor_key), 200


def _authorize_related(spec, names, scope: str) -> None:
    """A key limited to some tables reaches no other one through include or a nested insert."""
    _authorize_tables([spec.relations[name].target for name in names if name in spec.relations], scope)


def _authorize_tables(tables, scope: str) -> None:
    """A 403 unless the caller may act with ``scope`` on each of ``tables`` (beyond the one in the path)."""
    principal = getattr(g, "principal", None)
    for table in tables if principal is not None else ():
        auth.authorize(principal, scope, table)


def _export(gateway, spec, method) -> Response:
    """Stream the whole result as CSV or NDJSON (export.py); the query is checked before the first byte."""
    raw = query_from_args(request.args) if method == "GET" else _read_body(required=False)
    if method != "GET" and request.args:
        raise BadQuery("send the query in the body, not the query string")
    fmt = export.wanted_format(request.accept_mimetypes)
    stmt, names = export.plan(gateway.db.dialect_name, spec, raw, gateway.config, gateway.cursor_key)
    return Response(export.stream(gateway.db.engine, stmt, names, fmt), mimetype=export.MEDIA_TYPES[fmt])


def _post_collection(gateway, spec, session):
    conditional.refuse_conditions("POST inserts new rows")
    if request.mimetype in export.FORMATS:  # a bulk import
        request.max_content_length = gateway.config.max_import_bytes
        count = export.import_rows(session, spec, request.stream, export.FORMATS[request.mimetype])
        return {"count": count}, 201
    body = _read_body()
    if isinstance(body, list):
        ids = crud.insert_rows(session, spec, body, gateway.config)
        return {"ids": ids, "count": len(ids)}, 201
    if nested.has_children(spec, body):
        _authorize_related(spec, list(body), "write")
        pk, row = nested.insert_with_children(session, spec, gateway.registry, body, gateway.config)
    else:
        pk, row = crud.insert_row(session, spec, body)
    alone = {k: v for k, v in row.items() if k not in spec.relations}  # a nested insert embeds its related rows
    return {"id": pk, "data": row}, 201, conditional.etag_header(alone)


def _put_collection(gateway, spec, session):
    if "on" in request.args:
        conditional.refuse_conditions("PUT ?on= writes rows by a unique key")
        return upsert.upsert_on(session, spec, request.args["on"], _read_body(), gateway.config), 200
    created, pk, row = crud.upsert_row(session, spec, None, _read_body(), conditional.precondition())
    return {"id": pk, "data": row}, 201 if created else 200, conditional.etag_header(row)


def _delete_collection(gateway, spec, session):
    body = _read_body()
    if not isinstance(body, dict) or not body:
        raise BadQuery("DELETE /<table> takes {\"where\": {...}} or the primary key, e.g. {\"id\": 1}")
    if set(body) == {"where"}:
        conditional.refuse_conditions("DELETE by where deletes many rows")
        return {"count": crud.delete_where(session, spec, body["where"], gateway.config)}, 200
    pk = spec.pk_from_body(body)
    if pk is None or len(body) != len(spec.primary_key):
        raise BadQuery("DELETE /<table> takes {\"where\": {...}} or exactly the primary key, e.g. {\"id\": 1}")
    return {"id": crud.delete_row(session, spec, pk, conditional.precondition())}, 200


def _get_row(gateway, spec, session, pk):
    row = crud.get_row(session, spec, pk)
    return {"data": row}, 200, conditional.etag_header(row)


def _put_row(gateway, spec, session, pk):
    created, pk_json, row = crud.upsert_row(session, spec, pk, _read_body(), conditional.precondition())
    return {"id": pk_json, "data": row}, 201 if created else 200, conditional.etag_header(row)


def _patch_row(gateway, spec, session, pk):
    row = crud.patch_row(session, spec, pk, _read_body(), conditional.precondition())
    return {"id": spec.pk_json(pk), "data": row}, 200, conditional.etag_header(row)


def _delete_row(gateway, spec, session, pk):
    return {"id": crud.delete_row(session, spec, pk, conditional.precondition())}, 200


_COLLECTION_HANDLERS: dict[str, Callable] = {
    "GET": _query_collection, "FETCH": _query_collection, "QUERY": _query_collection,
    "POST": _post_collection, "PUT": _put_collection, "DELETE": _delete_collection,
}
def _put_patients(gateway, spec, session):
    """PUT /patients: the patient upsert (tiddly.monitor.patients), not the generic one."""
    conditional.refuse_conditions("PUT /patients is the patient upsert")
    _authorize_tables([PatientReading.__tablename__], "write")  # it appends and answers readings
    unknown = [k for k in request.args if k != "readings"]
    if unknown:
        raise BadQuery(f"unknown query parameter {unknown[0]!r} on PUT /patients; known: readings", key=unknown[0])
    readings = patients.view_limit(request.args.get("readings"))
    status, view = patients.upsert_patient(session, _read_body(), readings)
    return {"id": view["room_number"], "data": view}, status


# (table, verb) -> a handler that replaces the generic one for that table.
_SPECIAL_HANDLERS: dict[tuple, Callable] = {(Patient.__table__, "PUT"): _put_patients}
_ROW_HANDLERS: dict[str, Callable] = {
    "GET": _get_row, "PUT": _put_row, "PATCH": _patch_row, "DELETE": _delete_row,
}
