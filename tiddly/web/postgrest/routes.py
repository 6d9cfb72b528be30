"""The PostgREST dialect's routes: ``GET/HEAD/POST/PATCH/PUT/DELETE <path>/<table>`` and ``GET <path>/``
(any other verb under ``<path>`` is a 405 in PostgREST's words; OPTIONS lists the verbs).

A request is read by grammar.py, turned into Tiddly's own query object and write
calls by translate.py, answered by the same services as Tiddly's own API (pages,
crud, upsert, export's CSV reader) in one session, and rendered by render.py. The
guard (web/guard.py) has already found the caller (``Authorization: Bearer`` or
``apikey``) and checked the table in the path; embeds follow only relations to the
tables the caller may see (``guard.visible_tables``).
"""
from __future__ import annotations

import io
from dataclasses import replace
from urllib.parse import quote, unquote_plus

from flask import Blueprint, Flask, Response, request
from werkzeug.routing import Rule

from tiddly import jsonio
from tiddly.errors import BadJson, NotFound
from tiddly.registry import Policy, TableSpec
from tiddly.services import crud, export, pages, upsert
from tiddly.web import guard
from tiddly.web.body import raw_body
from tiddly.web.postgrest import grammar, openapi, render, translate
from tiddly.web.postgrest.grammar import Filter, Media, Node, Params, PostgrestError

BLUEPRINT = "postgrest"
METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
ROOT_METHODS = ["GET", "HEAD"]
RPC_METHODS = ["GET", "HEAD", "POST"]
SCHEMA = "public"  # the one schema name clients may ask for (Accept-Profile / Content-Profile)
DIALECT = guard.Dialect(
    key_header="apikey",
    request_headers=", apikey, Prefer, Range, Range-Unit, Accept-Profile, Content-Profile, X-Client-Info, "
                    "x-supabase-api-version",
    exposed_headers=", Content-Range, Preference-Applied, Location, Proxy-Status",
)


def install(app: Flask, gateway) -> None:
    """Mount the dialect at ``gateway.config.postgrest_path`` (nothing when it is empty).

    Its routes take every HTTP verb (a werkzeug rule with no method list), so no request
    under the path falls through to Tiddly's own routes, and a verb the dialect does not
    serve is a 405 in PostgREST's words rather than the router's."""
    path = gateway.config.postgrest_path.rstrip("/")
    if not gateway.config.postgrest_path:
        return
    if not path.startswith("/") or path.startswith("/-/") or path == "/-":
        raise ValueError(f"TIDDLY_POSTGREST_PATH must start with / and lie outside /-/, got {path!r}")
    dialect = Blueprint(BLUEPRINT, __name__)
    dialect.register_error_handler(Exception, render.error)
    app.register_blueprint(dialect)
    for rule, name, view in ((path + "/", "root", lambda: _root(gateway)),
                             (path + "/rpc/<path:name>", "rpc", _rpc),
                             (path + "/<table>", "table", lambda table: _table(gateway, table)),
                             (path + "/<path:rest>", "unknown", _unknown)):
        app.url_map.add(Rule(rule, endpoint=f"{BLUEPRINT}.{name}", methods=None, strict_slashes=name != "root"))
        app.view_functions[f"{BLUEPRINT}.{name}"] = view
    guard.DIALECTS[BLUEPRINT] = DIALECT


def _root(gateway) -> Response:
    if (options := _options(ROOT_METHODS)) is not None:
        return options
    _profile(request.headers.get("Accept-Profile"))
    document = openapi.document(guard.visible_tables(gateway.registry), gateway.config.postgrest_path.rstrip("/"))
    return Response(jsonio.dumps(document), content_type="application/openapi+json; charset=utf-8")


def _rpc(name: str) -> Response:
    if request.method == "OPTIONS":
        return _options(RPC_METHODS)
    if request.method not in RPC_METHODS:
        raise PostgrestError(405, "PGRST101", f"Cannot use the {request.method[:20]} method on RPC",
                             headers={"Allow": ", ".join(RPC_METHODS)})
    raise PostgrestError(404, "PGRST202", f"Could not find the function public.{name[:60]} in the schema cache",
                         "Tiddly serves tables, not database functions (RPC).")


def _unknown(rest: str) -> Response:
    raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")


def _table(gateway, table: str) -> Response:
    spec = gateway.registry.get(table)
    if request.method in ("GET", "HEAD"):
        return _read(gateway, spec)
    allowed = [verb for verb in METHODS if verb in ("GET", "HEAD") or verb in spec.verbs]
    if (options := _options(allowed, None if "POST" in allowed else f"the table '{table}' is read-only")):
        return options
    _profile(request.headers.get("Content-Profile"))
    if "Idempotency-Key" in request.headers:
        raise PostgrestError(400, "PGRST100", "Idempotency-Key is not read here",
                             "Idempotency keys belong to Tiddly's own API (docs/API.md), not to the PostgREST dialect")
    media = grammar.parse_accept(request.headers.get("Accept"))
    prefer = _prefer()
    params = grammar.parse_params(request.args.items(multi=True), gateway.config.max_where_depth)
    _embeds(gateway.registry, spec, params.root)
    write = {"POST": _post, "PATCH": _patch, "PUT": _put, "DELETE": _delete}[request.method]
    return write(gateway, spec, params, prefer, media)


def _options(allowed: list[str], why: str | None = None) -> Response | None:
    """The answer to OPTIONS: the verbs the path allows; a 405 (PGRST117) for a verb not among
    them; None for one to serve."""
    allow = ", ".join(["OPTIONS", *allowed])
    if request.method == "OPTIONS":
        return Response(status=200, headers={"Allow": allow})
    if request.method not in allowed:
        raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {request.method[:20]}", why,
                             headers={"Allow": allow})
    return None


# -- reads -------------------------------------------------------------------------------

def _read(gateway, spec: TableSpec) -> Response:
    environ = request.environ  # plain dict lookups: this path is the one GET by key takes
    _profile(environ.get("HTTP_ACCEPT_PROFILE"))
    media = grammar.parse_accept(environ.get("HTTP_ACCEPT"))
    key = _by_key(spec, environ) if media.kind != "csv" else None
    if key is not None:  # ?id=eq.5 and nothing else: the statement by key that GET /<table>/<pk> uses
        with gateway.session() as session:
            try:
                data = [crud.get_row(session, spec, key)]
            except NotFound:
                data = []
        return render.rows(data, media, 200, {"Content-Range": render.content_range(0, len(data), None)})
    prefer = _prefer()
    params = grammar.parse_params(request.args.items(multi=True), gateway.config.max_where_depth)
    if params.columns is not None or params.on_conflict is not None:
        raise grammar.parse_error("parameter", "columns" if params.columns else "on_conflict",
                                  "'columns' and 'on_conflict' apply to writes")
    _embeds(gateway.registry, spec, params.root)
    offset, limit = _page(params.root, gateway.config.max_limit)
    count = "count" in prefer
    raw = translate.query(gateway.registry, spec, params.root, limit, offset, count)
    with gateway.session() as session:
        result = pages.fetch_embedded(session, spec, raw, gateway.config, gateway.registry)
    data = _shaped(gateway, spec, params.root, result["data"])
    total = result.get("count")
    status = 200
    if total is not None and offset > total:
        raise PostgrestError(416, "PGRST103", "Requested range not satisfiable",
                             f"An offset of {offset} was requested, but there are only {total} rows.",
                             headers={"Content-Range": f"*/{total}"})
    if total is not None and len(data) < total:
        status = 206
    headers = {"Content-Range": render.content_range(offset, len(data), total)}
    if count:
        headers["Preference-Applied"] = f"count={prefer['count']}"
    return render.rows(data, media, status, headers)


def _by_key(spec: TableSpec, environ: dict) -> tuple | None:
    """The key of ``?<pk>=eq.<value>`` when the request is exactly that, on a one-column
    primary key; else None. Read off the raw query string: no MultiDict to build."""
    query = environ.get("QUERY_STRING", "")
    if len(spec.primary_key) != 1 or "&" in query or "HTTP_PREFER" in environ or "HTTP_RANGE" in environ:
        return None
    col = spec.primary_key[0]
    name, _, value = query.partition("=")
    if name != col.name or not value.startswith("eq.") or not col.readable:
        return None
    text = unquote_plus(value[3:]) if "%" in value or "+" in value else value[3:]
    return (col.coerce(col.parse_text(text)),)


def _page(root: Node, max_limit: int) -> tuple[int, int]:
    """(offset, limit) from ``offset``/``limit`` and the Range header (their overlap), capped
    at the largest page Tiddly serves, as PostgREST's db-max-rows caps it."""
    offset = root.offset or 0
    end = offset + root.limit - 1 if root.limit is not None else None
    wanted = grammar.parse_range(request.headers.get("Range")) if request.method in ("GET", "HEAD") else None
    if wanted is not None:
        low, high = wanted
        offset = max(offset, low)
        end = high if end is None else (end if high is None else min(end, high))
    limit = max_limit if end is None else max(0, end - offset + 1)
    return offset, min(limit, max_limit)


def _shaped(gateway, spec: TableSpec, root: Node, data: list[dict]) -> list[dict]:
    if translate.needs_projection(root):
        return translate.project(gateway.registry, spec, root, data)
    return data


# -- writes ------------------------------------------------------------------------------

def _post(gateway, spec: TableSpec, params: Params, prefer: dict, media: Media) -> Response:
    _only_select(params.root)
    payload = _rows_body(spec)
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise PostgrestError(400, "PGRST102", "the body must be a JSON object or an array of objects")
    items = _columns(spec, items, params.columns, prefer.get("missing") == "default")
    with gateway.session(write=True) as session:
        if not items:
            keys = []
        elif "resolution" in prefer:
            on = params.on_conflict or ",".join(c.name for c in spec.primary_key)
            keys = upsert.upsert_keys(session, spec, on, items, gateway.config,
                                      ignore=prefer["resolution"] == "ignore-duplicates")
        elif isinstance(payload, dict):
            keys = [_key(crud.insert_row(session, spec, items[0])[0])]
        else:
            keys = [_key(pk) for pk in crud.insert_rows(session, spec, items, gateway.config)]
        return _written(gateway, session, spec, params, prefer, media, keys, 201)


def _patch(gateway, spec: TableSpec, params: Params, prefer: dict, media: Media) -> Response:
    where = _filtered(spec, params.root, "UPDATE")
    payload = _json_body()
    if not isinstance(payload, dict):
        raise PostgrestError(400, "PGRST102", "PATCH takes one JSON object: the columns to set")
    if params.columns is not None:
        payload = _columns(spec, [payload], params.columns, missing_default=True)[0]
    with gateway.session(write=True) as session:
        if prefer.get("return") != "representation" and not _limited(params.root):
            count = crud.update_where(session, spec, where, payload, gateway.config)
            return _written(gateway, session, spec, params, prefer, media, count, 204)
        keys = crud.update_keys(session, spec, _locked(gateway, session, spec, where, params.root), payload)
        return _written(gateway, session, spec, params, prefer, media, keys, 200)


def _delete(gateway, spec: TableSpec, params: Params, prefer: dict, media: Media) -> Response:
    where = _filtered(spec, params.root, "DELETE")
    with gateway.session(write=True) as session:
        if prefer.get("return") != "representation" and not _limited(params.root):
            count = crud.delete_where(session, spec, where, gateway.config)
            return _written(gateway, session, spec, params, prefer, media, count, 204)
        keys = _locked(gateway, session, spec, where, params.root)
        response = _written(gateway, session, spec, params, prefer, media, keys, 200)
        crud.delete_keys(session, spec, keys)
        return response


def _limited(root: Node) -> bool:
    return root.limit is not None or root.offset is not None


def _locked(gateway, session, spec: TableSpec, where: dict, root: Node) -> list[tuple]:
    """The keys of the rows a PATCH or DELETE changes, locked: with ``limit``/``offset``, only
    those of the filtered rows in ``order`` (the primary key ends it, so the choice is stable)."""
    return crud.locked_keys(session, spec, where, gateway.config, translate.orderby(root), root.limit,
                            root.offset or 0)


def _put(gateway, spec: TableSpec, params: Params, prefer: dict, media: Media) -> Response:
    """PUT ?<pk>=eq.<value>: one row, created or changed, its key in the URL and the body alike."""
    root = params.root
    if root.limit is not None or root.offset is not None:
        raise PostgrestError(400, "PGRST114", "limit/offset querystring parameters are not allowed for PUT")
    by_name = {f.column: f for f in root.conditions if isinstance(f, Filter)}
    if len(root.conditions) != len(spec.primary_key) or set(by_name) != {c.name for c in spec.primary_key} \
            or any(f.op != "eq" or f.negate or f.modifier for f in by_name.values()):
        raise PostgrestError(405, "PGRST105", "Filters must include all and only primary key columns with 'eq' "
                                              "operators")
    key = tuple(col.coerce(col.parse_text(by_name[col.name].value)) for col in spec.primary_key)
    payload = _json_body()
    if not isinstance(payload, dict) or spec.pk_from_body(payload) not in (None, key):
        raise PostgrestError(400, "PGRST115", "Payload values do not match URL in primary key column(s)")
    with gateway.session(write=True) as session:
        created, _pk, _row = crud.upsert_row(session, spec, key, payload)
        return _written(gateway, session, spec, params, prefer, media, [key], 201 if created else 200)


def _written(gateway, session, spec: TableSpec, params: Params, prefer: dict, media: Media,
             keys: list[tuple] | int, status: int) -> Response:
    """The answer to a write (still in its transaction: an error here undoes it): the rows with
    ``return=representation``, else no body; ``keys`` is a count when the rows were not kept."""
    count = keys if isinstance(keys, int) else len(keys)
    if media.kind == "object" and count != 1:
        raise render.singular_error(count)
    most = prefer.get("max-affected") if prefer.get("handling") == "strict" else None
    if most is not None and request.method in ("PATCH", "DELETE") and count > int(most):
        raise PostgrestError(400, "PGRST124", "Query result exceeds max-affected preference constraint",
                             f"The query affects {count} rows")
    headers = {"Content-Range": render.content_range(0, count, count if "count" in prefer else None)}
    applied = [f"{name}={prefer[name]}" for name in ("return", "count", "resolution", "missing", "handling",
                                                      "max-affected") if name in prefer]
    if applied:
        headers["Preference-Applied"] = ", ".join(applied)
    if prefer.get("return") == "representation":
        node = replace(params.root, conditions=[], order=None, limit=None, offset=None)
        raw = translate.query(gateway.registry, spec, node, None, 0, False)
        data = pages.fetch_embedded(session, spec, raw, gateway.config, gateway.registry, keys)["data"]
        return render.rows(_shaped(gateway, spec, node, data), media, status, headers)
    if prefer.get("return") == "headers-only" and request.method == "POST" and count == 1:
        filters = "&".join(f"{quote(c.name)}=eq.{quote(str(v))}" for c, v in zip(spec.primary_key, keys[0]))
        headers["Location"] = f"/{quote(spec.name)}?{filters}"
    return Response(status=status if status == 201 else 204, headers=headers)


def _filtered(spec: TableSpec, root: Node, verb: str) -> dict:
    """The write's filter; none at all is refused, as pg-safeupdate refuses it under PostgREST."""
    if any(order.embed is not None for order in root.order or ()):
        raise grammar.not_implemented(f"ordering the rows of a {verb} by a related table's column")
    condition = translate.where(spec, root.conditions)
    if condition is None:
        raise PostgrestError(400, "21000", f"{verb} requires a WHERE clause",
                             hint="Tiddly changes or deletes rows by filter only: add one, e.g. ?id=eq.1")
    return condition


def _only_select(root: Node) -> None:
    """A POST takes no filter, order, limit or offset (only ``select``, for its answer)."""
    if root.order or root.limit is not None or root.offset is not None:
        raise PostgrestError(400, "PGRST127", "Feature not implemented",
                             "order, limit and offset do not apply to POST")
    if root.conditions:
        raise grammar.parse_error("filter", "POST", "filters do not apply to POST")


def _columns(spec: TableSpec, items: list[dict], columns: list[str] | None, missing_default: bool) -> list[dict]:
    """``?columns=a,b``: only those keys of each object; an absent one is null (``missing=default``:
    the column's default), as PostgREST writes them."""
    if columns is None:
        return items
    for name in columns:
        col = spec.columns.get(name)
        if col is None or col.policy is Policy.HIDDEN:
            raise PostgrestError(400, "PGRST204", f"Could not find the '{name}' column of '{spec.name}' in the "
                                                  "schema cache")
    fill = [] if missing_default else [name for name in columns if spec.columns[name].writable]
    return [{**{name: None for name in fill}, **{name: item[name] for name in columns if name in item}}
            for item in items]


def _key(pk) -> tuple:
    return tuple(pk) if isinstance(pk, list) else (pk,)


def _rows_body(spec: TableSpec):
    """A POST's rows: JSON (an object or an array), or CSV, read as Tiddly's import reads it
    but as PostgREST does: a header line of column names, an empty field is the empty string
    and ``NULL`` is null."""
    if request.mimetype != "text/csv":
        return _json_body("application/json or text/csv")
    return [row for _line, row in export.csv_rows(spec, io.BytesIO(raw_body()), null="NULL")]


def _json_body(accepted: str = "application/json"):
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise PostgrestError(415, "PGRST102", f"Content-Type not acceptable: {mimetype or 'none'}",
                             f"Send the body as {accepted}")
    raw = raw_body()
    if not raw.strip():
        raise PostgrestError(400, "PGRST102", "Empty or invalid json")
    try:
        return jsonio.loads(raw)
    except BadJson as exc:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", exc.message) from None


# -- headers and access -------------------------------------------------------------------

def _profile(name: str | None) -> None:
    """Accept-Profile (reads) or Content-Profile (writes): the one schema there is, or a 406."""
    if name is not None and name != SCHEMA:
        raise PostgrestError(406, "PGRST106", f"Invalid schema: {name[:60]}",
                             hint=f"Only the following schemas are exposed: {SCHEMA}")


def _prefer() -> dict[str, str]:
    known, other = grammar.parse_prefer(request.headers.getlist("Prefer"))
    if known.get("handling") == "strict" and other:
        raise PostgrestError(400, "PGRST122", "Invalid preferences given with handling=strict",
                             f"Invalid preferences: {', '.join(other)}")
    return known


def _embeds(registry, spec: TableSpec, node: Node) -> None:
    """Name the embeds' relations. To a key limited to some tables, a relation to another one is
    no relation (PGRST200), as those tables are missing from its root document."""
    visible = guard.visible_tables(registry).tables if node.embeds else None  # (no embed: nothing to look up)
    translate.resolve(registry, spec, node, visible)
