"""Tiddly's own API: the dynamic endpoint ``/<table>`` and ``/<table>/<pk>`` (docs/API.md).

A request is parsed against the registry as its caller sees it (``language.py`` reads the
query language; the bodies are read here) into one typed operation, which the app's
executor runs (``services/execute.py``: it alone decides whether the caller may), and the
result is rendered in Tiddly's envelope. A table an extension serves itself on a verb
(``Gateway.table_handlers``: the patient monitor's ``PUT /patients``) is handed to it.
"""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote

from flask import Flask, Response, g, request

from tiddly import jsonio
from tiddly.errors import (
    BadQuery,
    BadValue,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)
from tiddly.registry import TableSpec
from tiddly.services import (
    access,
    crud,
    cursor,
    export,
    idempotency,
    nested,
    reads,
    upsert,
)
from tiddly.services.execute import Answer, Idempotent
from tiddly.services.plan import (
    Delete,
    Import,
    Insert,
    Nested,
    Put,
    Read,
    Update,
    Upsert,
    Written,
)
from tiddly.web import conditional
from tiddly.web.api import language
from tiddly.web.body import import_stream, raw_body

READ_VERBS = ("GET", "FETCH", "QUERY")
COLLECTION_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "FETCH", "QUERY")
ROW_VERBS = ("GET", "HEAD", "PUT", "PATCH", "DELETE")
QUERY_OVERRIDES = ("FETCH", "QUERY")
# A write's operation, and how its result becomes (payload, status[, headers]).
Planned = tuple[Any, Callable[[Written], tuple]]


def register(app: Flask, gateway) -> None:
    app.add_url_rule("/<table>", "collection", lambda table: collection(gateway, table),
                     methods=COLLECTION_VERBS, strict_slashes=False)  # /books/ too; Flask adds OPTIONS itself
    app.add_url_rule("/<table>/<path:pk>", "row", lambda table, pk: row(gateway, table, pk), methods=ROW_VERBS)


def ok(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(jsonio.dumps({"status": "success", **payload}), status, mimetype="application/json",
                    headers=headers)


# -- the two routes ----------------------------------------------------------------------------

def collection(gateway, table: str) -> Response:
    view = gateway.view(g.principal)
    spec = access.table(view, g.principal, table)
    method = _effective_method()
    special = tuple(verb for name, verb in gateway.table_handlers if name == spec.name)
    _allowed(spec, "GET" if method == "HEAD" else method, COLLECTION_VERBS, also=special)
    handler = gateway.table_handlers.get((spec.name, method))
    if handler is not None:
        return handler(gateway, view, spec)
    if method in READ_VERBS + ("HEAD",):
        if export.wanted_format(request.accept_mimetypes):
            return _export(gateway, spec, method)
        return _query(gateway, view, spec, method)
    idempotent = idempotent_request(gateway)  # before the body is read: its fingerprint covers the body
    planned = {"POST": _post, "PUT": _put, "DELETE": _delete}[method](gateway, view, spec)
    return written(gateway, spec, *planned, idempotent)


def row(gateway, table: str, raw_pk: str) -> Response:
    view = gateway.view(g.principal)
    spec = access.table(view, g.principal, table)
    method = "GET" if request.method == "HEAD" else request.method
    _allowed(spec, method, ROW_VERBS)
    pk = spec.pk_from_path(raw_pk)
    if method == "GET":
        found = gateway.executor.execute(Read(spec, spec.readable, key=pk), g.principal).rows
        if not found:
            raise NotFound(f"no row of '{spec.name}' has primary key {','.join(map(str, pk))}", table=spec.name)
        return ok({"data": found[0]}, 200, conditional.etag_header(found[0]))
    idempotent = idempotent_request(gateway)
    planned = {"PUT": _put_row, "PATCH": _patch_row, "DELETE": _delete_row}[method](spec, pk)
    return written(gateway, spec, *planned, idempotent)


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


# -- reads -------------------------------------------------------------------------------------

def _query(gateway, view, spec: TableSpec, method: str) -> Response:
    raw = _query_object(method)
    page = language.page(view, spec, raw, gateway.config, gateway.cursor_key)
    result = gateway.executor.execute(page.read, g.principal)
    payload: dict[str, Any] = {"data": result.rows}
    if result.count is not None:
        payload["count"] = result.count
    if result.last is not None:
        payload["next"] = cursor.encode(gateway.cursor_key, result.last, page.fingerprint, gateway.config)
    return ok(payload)


def _export(gateway, spec: TableSpec, method: str) -> Response:
    """Stream the whole result as CSV or NDJSON; the query is checked before the first byte."""
    read = language.export(spec, _query_object(method), gateway.config, gateway.cursor_key)
    fmt = export.wanted_format(request.accept_mimetypes)
    names = [c.name for c in read.columns]
    chunks = gateway.executor.stream(read, g.principal,
                                     lambda session: export.render(names, reads.stream(session, read), fmt))
    return Response(chunks, mimetype=export.MEDIA_TYPES[fmt])


def _query_object(method: str) -> Any:
    if method in ("GET", "HEAD"):
        return language.query_from_args(request.args)
    if request.args:
        raise BadQuery("send the query in the body, not the query string")
    return read_body(required=False)


# -- writes ------------------------------------------------------------------------------------

def idempotent_request(gateway) -> Idempotent | None:
    """The request's Idempotency-Key (checked) and its fingerprint, if it sends one; a 409 now
    when the key belongs to another request. Call it before the body is read: the fingerprint
    reads the body, and keeps it for the parser."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    idempotent = Idempotent(idempotency.check_key(key),
                            idempotency.fingerprint(request.method, request.full_path, request.get_data()))
    gateway.executor.refuse_reused_key(idempotent)
    return idempotent


def written(gateway, spec: TableSpec, operation, render: Callable[[Written], tuple],
            idempotent: Idempotent | None = None) -> Response:
    """Run a write (under its Idempotency-Key, if any) and answer it."""
    answer = gateway.executor.execute(operation, g.principal, lambda written: _answer(spec, *render(written)),
                                      idempotent)
    response = Response(answer.body, answer.status, mimetype="application/json", headers=answer.headers)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
        if answer.status == 201:
            _locate(response, spec, jsonio.loads(answer.body).get("id"))
    return response


def _answer(spec: TableSpec, payload: dict, status: int, headers: dict | None = None) -> Answer:
    answer = Answer(status, jsonio.dumps({"status": "success", **payload}), dict(headers or {}))
    if status == 201 and payload.get("id") is not None:
        answer.headers["Location"] = _location(spec, payload["id"])
    return answer


def _locate(response: Response, spec: TableSpec, pk) -> None:
    if pk is not None:
        response.headers["Location"] = _location(spec, pk)


def _location(spec: TableSpec, pk) -> str:
    """Where a row created by a 201 lives: ``/<table>/<pk>``."""
    parts = pk if isinstance(pk, (list, tuple)) else [pk]
    path = ",".join(quote(p.isoformat() if hasattr(p, "isoformat") else str(p), safe="") for p in parts)
    return f"{request.script_root}/{quote(spec.name, safe='')}/{path}"


def _post(gateway, view, spec: TableSpec) -> Planned:
    conditional.refuse_conditions("POST inserts new rows")
    if request.mimetype in export.FORMATS:  # a bulk import, read as it streams in
        request.max_content_length = gateway.config.max_import_bytes
        rows = export.parsed_rows(spec, import_stream(), export.FORMATS[request.mimetype],
                                  max_line_bytes=gateway.config.max_body_bytes)
        return Import(spec, rows), lambda written: ({"count": written.count}, 201)
    body = read_body()
    if isinstance(body, list):
        return _bulk(gateway, spec, body)
    children = _children(view, spec, body)
    values = spec.values_for_write({k: v for k, v in body.items() if k not in spec.relations}
                                   if children else body, insert=True)

    def render(written: Written) -> tuple:
        stored = written.rows[0]
        alone = {k: v for k, v in stored.items() if k not in spec.relations}  # a nested insert embeds its related rows
        return {"id": spec.pk_json(written.keys[0]), "data": stored}, 201, conditional.etag_header(alone)
    return Insert(spec, (values,), children=children), render


def _bulk(gateway, spec: TableSpec, items: list) -> Planned:
    if not items:
        raise BadValue("a bulk insert needs at least one row")
    if len(items) > gateway.config.max_bulk_rows:
        raise BadQuery(f"a bulk insert takes at most {gateway.config.max_bulk_rows} rows, got {len(items)}")
    rows = tuple(crud.for_item(index, spec.values_for_write, item, insert=True) for index, item in enumerate(items))
    return Insert(spec, rows, bulk=True), lambda written: (
        {"ids": [spec.pk_json(key) for key in written.keys], "count": written.count}, 201)


def _children(view, spec: TableSpec, body: Any) -> tuple[Nested, ...]:
    """The one-to-many related rows a nested insert writes with its new row."""
    if not isinstance(body, dict):
        return ()
    found = []
    for name in body:
        relation = spec.relations.get(name)
        if relation is not None:
            target = view.get(relation.target)
            found.append(Nested(relation, target, nested.checked_children(name, target, body[name], relation.many)))
    return tuple(found)


def _put(gateway, view, spec: TableSpec) -> Planned:
    if "on" not in request.args:
        return _put_row(spec, None)
    conditional.refuse_conditions("PUT ?on= writes rows by a unique key")
    on = upsert.unique_key(spec, [name.strip() for name in request.args["on"].split(",") if name.strip()])
    body = read_body()
    single = isinstance(body, dict)
    items = [body] if single else body
    if not isinstance(items, list) or not items:
        raise BadValue(f"PUT /{spec.name}?on=... takes a row object or a non-empty array of rows")
    rows = upsert.checked_rows(spec, on, items, gateway.config.max_bulk_rows)

    def render(written: Written) -> tuple:
        if single:
            return {"id": spec.pk_json(written.keys[0]), "data": written.rows[0]}, 200
        return {"data": written.rows, "count": len(written.rows)}, 200
    return Upsert(spec, tuple(rows), on, returning=Read(spec, spec.readable)), render


def _delete(gateway, view, spec: TableSpec) -> Planned:
    body = read_body()
    if not isinstance(body, dict) or not body:
        raise BadQuery("DELETE /<table> takes {\"where\": {...}} or the primary key, e.g. {\"id\": 1}")
    if set(body) == {"where"}:
        conditional.refuse_conditions("DELETE by where deletes many rows")
        if not isinstance(body["where"], dict) or not body["where"]:
            raise BadQuery("deleting by filter needs a non-empty 'where'; to delete one row use its primary key")
        condition = language.where(spec, body["where"], gateway.config)
        return Delete(spec, where=condition), lambda written: ({"count": written.count}, 200)
    pk = spec.pk_from_body(body)
    if pk is None or len(body) != len(spec.primary_key):
        raise BadQuery("DELETE /<table> takes {\"where\": {...}} or exactly the primary key, e.g. {\"id\": 1}")
    return _delete_row(spec, pk)


def _put_row(spec: TableSpec, pk: tuple | None) -> Planned:
    """PUT by primary key (in the path, or the body): the row's fields set, or the row created."""
    obj = read_body()
    if not isinstance(obj, dict):
        raise BadValue(f"a row for table '{spec.name}' must be a JSON object")
    body_pk = spec.pk_from_body(obj)
    if pk is None:
        if body_pk is None:
            names = ", ".join(c.name for c in spec.primary_key)
            raise BadValue(f"PUT /{spec.name} needs the primary key ({names}) in the path or the body")
        pk = body_pk
    elif body_pk is not None and body_pk != pk:
        raise BadValue("the primary key in the body differs from the one in the path")
    key_names = {c.name for c in spec.primary_key}
    values = spec.values_for_write({k: v for k, v in obj.items() if k not in key_names}, insert=False)

    def render(written: Written) -> tuple:
        stored = written.rows[0]
        return ({"id": spec.pk_json(written.keys[0]), "data": stored}, 201 if written.created else 200,
                conditional.etag_header(stored))
    return Put(spec, pk, values, conditional.precondition()), render


def _patch_row(spec: TableSpec, pk: tuple) -> Planned:
    values = spec.values_for_write(read_body(), insert=False)

    def render(written: Written) -> tuple:
        stored = written.rows[0]
        return {"id": spec.pk_json(written.keys[0]), "data": stored}, 200, conditional.etag_header(stored)
    return Update(spec, values, key=pk, precondition=conditional.precondition()), render


def _delete_row(spec: TableSpec, pk: tuple) -> Planned:
    return (Delete(spec, key=pk, precondition=conditional.precondition()),
            lambda written: ({"id": spec.pk_json(written.keys[0])}, 200))


def read_body(required: bool = True) -> Any:
    """The request's JSON body (a 415 for another media type, a 400 for none when required)."""
    raw = raw_body()
    if not raw.strip():
        if required:
            raise BadValue(f"{request.method} needs a JSON body")
        return None
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"the body must be JSON (Content-Type: application/json), got {mimetype or 'none'!r}")
    return jsonio.parse_body(raw)
