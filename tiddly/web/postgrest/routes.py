"""The PostgREST dialect's routes: ``GET/HEAD/POST/PATCH/PUT/DELETE <path>/<table>``, ``GET <path>/``
and ``GET/HEAD/POST <path>/rpc/<fn>`` (rpc.py) (any other verb under ``<path>`` is a 405 in
PostgREST's words; OPTIONS lists the verbs).

A request is read by grammar.py, planned by plan.py into a typed operation over the
registry as the caller sees it, run by the app's executor (which alone decides whether the
caller may: the guard, web/guard.py, has only found who is asking, from ``Authorization:
Bearer`` or ``apikey``), and rendered by render.py.
"""
from __future__ import annotations

import io
from dataclasses import replace
from typing import Callable
from urllib.parse import quote, unquote_plus

from flask import Blueprint, Flask, Response, g, request
from werkzeug.routing import Rule

from tiddly import jsonio
from tiddly.errors import BadJson, BadQuery
from tiddly.registry import Policy, TableSpec
from tiddly.services import access, crud, export, upsert
from tiddly.services.plan import (
    Delete,
    Explain,
    Insert,
    Put,
    Read,
    Update,
    Upsert,
    Written,
)
from tiddly.web import conditional, guard
from tiddly.web.body import raw_body
from tiddly.web.postgrest import asked, grammar, openapi, plan, render, rpc
from tiddly.web.postgrest.grammar import Filter, Media, Node, Params, PostgrestError

BLUEPRINT = "postgrest"
METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
ROOT_METHODS = ["GET", "HEAD"]
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
    functions = rpc.install(gateway)
    for rule, name, view in ((path + "/", "root", lambda: _root(gateway)),
                             (path + "/rpc/<path:name>", "rpc", lambda name: rpc.respond(gateway, functions, name)),
                             (path + "/<table>", "table", lambda table: _table(gateway, table, functions.view)),
                             (path + "/<path:rest>", "unknown", _unknown)):
        app.url_map.add(Rule(rule, endpoint=f"{BLUEPRINT}.{name}", methods=None, strict_slashes=name != "root"))
        app.view_functions[f"{BLUEPRINT}.{name}"] = view
    gateway.dialects[BLUEPRINT] = DIALECT


def _root(gateway) -> Response:
    if (options := _options(ROOT_METHODS)) is not None:
        return options
    asked.profile(request.headers.get("Accept-Profile"))
    document = openapi.document(gateway.view(g.principal), gateway.config.postgrest_path.rstrip("/"))
    return Response(jsonio.dumps(document), content_type="application/openapi+json; charset=utf-8")


def _unknown(rest: str) -> Response:
    raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")


def _table(gateway, table: str, view_of=None) -> Response:
    view = (view_of or gateway.view)(g.principal)  # the tables, with what functions add (rpc.py)
    spec = access.table(view, g.principal, table)
    if request.method in ("GET", "HEAD"):
        return _read(gateway, view, spec)
    allowed = [verb for verb in METHODS if verb in ("GET", "HEAD") or verb in spec.verbs]
    if (options := _options(allowed, None if "POST" in allowed else f"the table '{table}' is read-only")):
        return options
    asked.profile(request.headers.get("Content-Profile"))
    if "Idempotency-Key" in request.headers:
        raise PostgrestError(400, "PGRST100", "Idempotency-Key is not read here",
                             "Idempotency keys belong to Tiddly's own API (docs/API.md), not to the PostgREST dialect")
    media = grammar.parse_accept(request.headers.get("Accept"))
    if media.kind == "plan":
        raise PostgrestError(406, "PGRST107", "None of these media types are available: "
                                              f"{request.headers.get('Accept', '')[:200]}",
                             "Tiddly explains reads (GET) only")
    prefer = asked.prefer()
    params = grammar.parse_params(request.args.items(multi=True), gateway.config.max_where_depth)
    plan.resolve(view, spec, params.root)
    write = {"POST": _post, "PATCH": _patch, "PUT": _put, "DELETE": _delete}[request.method]
    operation, status = write(gateway, view, spec, params, prefer)
    return gateway.executor.execute(operation, g.principal,
                                    lambda written: _written(gateway, view, spec, params, prefer, media, written,
                                                             status(written)),
                                    rollback=prefer.get("tx") == "rollback")


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

def _read(gateway, view, spec: TableSpec) -> Response:
    environ = request.environ  # plain dict lookups: this path is the one GET by key takes
    asked.profile(environ.get("HTTP_ACCEPT_PROFILE"))
    media = grammar.parse_accept(environ.get("HTTP_ACCEPT"))
    key = _by_key(spec, environ) if media.kind in ("json", "object") else None
    if key is not None:  # ?id=eq.5 and nothing else: the statement by key that GET /<table>/<pk> uses
        data = gateway.executor.execute(Read(spec, spec.readable, key=key), g.principal).rows
        return render.rows(data, media, 200, {"Content-Range": render.content_range(0, len(data), None)})
    prefer = asked.prefer()
    params = grammar.parse_params(request.args.items(multi=True), gateway.config.max_where_depth)
    if params.columns is not None or params.on_conflict is not None:
        raise grammar.parse_error("parameter", "columns" if params.columns else "on_conflict",
                                  "'columns' and 'on_conflict' apply to writes")
    plan.resolve(view, spec, params.root)
    offset, limit = asked.page(params.root, gateway.config.max_limit)
    count = "count" in prefer
    read = plan.read(view, spec, params.root, gateway.config, limit, offset, count)
    if count and prefer["count"] != "exact":
        read = replace(read, estimate=prefer["count"])
    if media.kind == "plan":
        explained = gateway.executor.execute(Explain(read, media.plan_format, media.plan_options), g.principal)
        return render.plan(explained, media)
    result = gateway.executor.execute(read, g.principal)
    data = plan.shaped(view, spec, params.root, result.rows)
    total = result.count
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


# -- writes ------------------------------------------------------------------------------

# A write's operation, and its status once written.
Planned = tuple[object, Callable[[Written], int]]


def _post(gateway, view, spec: TableSpec, params: Params, prefer: dict) -> Planned:
    _only_select(params.root)
    payload = _rows_body(spec)
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise PostgrestError(400, "PGRST102", "the body must be a JSON object or an array of objects")
    missing_default = prefer.get("missing") == "default"
    items = _columns(spec, items, params.columns, missing_default)
    returning = _returning(gateway, view, spec, params, prefer)
    if "resolution" in prefer and items:
        names = params.on_conflict.split(",") if params.on_conflict else [c.name for c in spec.primary_key]
        on = upsert.unique_key(spec, names)
        # a row without its key (the key left to its default) is a new row, as PostgreSQL inserts it
        rows = upsert.checked_rows(spec, on, items, gateway.config.max_bulk_rows, keyless=missing_default)
        merge = prefer["resolution"] == "merge-duplicates"
        # with ?columns= and missing=default, a column a row leaves out takes its default, merged too
        defaults = tuple(params.columns or ()) if missing_default else ()
        operation = Upsert(spec, tuple(rows), on, not merge, returning, defaults)
        # PostgREST: 201 when a row was inserted, 200 when a merge inserted none
        return operation, lambda written: 201 if not merge or any(c.op == "insert" for c in written.changes) else 200
    # A generated key may be named, as PostgreSQL's GENERATED BY DEFAULT lets PostgREST write it.
    if isinstance(payload, dict):
        operation = Insert(spec, (spec.values_for_write(items[0], insert=True, allow_pk=True),), returning=returning)
    else:
        if len(items) > gateway.config.max_bulk_rows:
            raise BadQuery(f"a bulk insert takes at most {gateway.config.max_bulk_rows} rows, got {len(items)}")
        rows = tuple(crud.for_item(i, spec.values_for_write, item, insert=True, allow_pk=True)
                     for i, item in enumerate(items))
        operation = Insert(spec, rows, bulk=True, returning=returning)
    return operation, lambda written: 201


def _patch(gateway, view, spec: TableSpec, params: Params, prefer: dict) -> Planned:
    condition, key = _filtered(gateway, spec, params.root, "UPDATE")
    payload = _json_body()
    if not isinstance(payload, dict):
        raise PostgrestError(400, "PGRST102", "PATCH takes one JSON object: the columns to set")
    if params.columns is not None:
        payload = _columns(spec, [payload], params.columns, missing_default=True)[0]
    values = spec.values_for_write(payload, insert=False)
    operation = Update(spec, values, key, condition, conditional.precondition(), *_limits(spec, params.root),
                       returning=_returning(gateway, view, spec, params, prefer))
    return operation, _with_rows(prefer)


def _delete(gateway, view, spec: TableSpec, params: Params, prefer: dict) -> Planned:
    condition, key = _filtered(gateway, spec, params.root, "DELETE")
    operation = Delete(spec, key, condition, conditional.precondition(), *_limits(spec, params.root),
                       returning=_returning(gateway, view, spec, params, prefer))
    return operation, _with_rows(prefer)


def _with_rows(prefer: dict) -> Callable[[Written], int]:
    return lambda written: 200 if prefer.get("return") == "representation" else 204


def _limits(spec: TableSpec, root: Node) -> tuple:
    """(order, limit, offset) of a PATCH or DELETE that changes only some of the rows it filters."""
    if root.limit is None and root.offset is None:
        return (), None, 0
    return plan.order(spec, root, by_key=True), root.limit, root.offset or 0


def _returning(gateway, view, spec: TableSpec, params: Params, prefer: dict) -> Read | None:
    """What ``return=representation`` reads back of the rows written (``select=``, embeds)."""
    if prefer.get("return") != "representation":
        return None
    node = replace(params.root, conditions=[], order=None, limit=None, offset=None)
    return plan.read(view, spec, node, gateway.config)


def _put(gateway, view, spec: TableSpec, params: Params, prefer: dict) -> Planned:
    """PUT ?<pk>=eq.<value>: one row, created or changed, its key in the URL and the body alike."""
    root = params.root
    if root.limit is not None or root.offset is not None:
        raise PostgrestError(400, "PGRST114", "limit/offset querystring parameters are not allowed for PUT")
    key = _key_filter(spec, root)
    if key is None:
        raise PostgrestError(405, "PGRST105", "Filters must include all and only primary key columns with 'eq' "
                                              "operators")
    payload = _json_body()
    if not isinstance(payload, dict) or spec.pk_from_body(payload) not in (None, key):
        raise PostgrestError(400, "PGRST115", "Payload values do not match URL in primary key column(s)")
    names = {c.name for c in spec.primary_key}
    values = spec.values_for_write({k: v for k, v in payload.items() if k not in names}, insert=False)
    operation = Put(spec, key, values, conditional.precondition(), _returning(gateway, view, spec, params, prefer))
    return operation, lambda written: 201 if written.created else 200


def _key_filter(spec: TableSpec, root: Node) -> tuple | None:
    """The primary key a request's filters name exactly (``?id=eq.5``, every key column, nothing
    else), or None."""
    by_name = {f.column: f for f in root.conditions if isinstance(f, Filter)}
    if len(root.conditions) != len(spec.primary_key) or set(by_name) != {c.name for c in spec.primary_key} \
            or any(f.op != "eq" or f.negate or f.modifier for f in by_name.values()):
        return None
    return tuple(col.coerce(col.parse_text(by_name[col.name].value)) for col in spec.primary_key)


def _written(gateway, view, spec: TableSpec, params: Params, prefer: dict, media: Media, written: Written,
             status: int) -> Response:
    """The answer to a write (still in its transaction: an error here undoes it): the rows with
    ``return=representation``, else no body."""
    count = written.count
    if media.kind == "object" and count != 1:
        raise render.singular_error(count)
    most = prefer.get("max-affected") if prefer.get("handling") == "strict" else None
    if most is not None and request.method in ("PATCH", "DELETE") and count > int(most):
        raise PostgrestError(400, "PGRST124", "Query result exceeds max-affected preference constraint",
                             f"The query affects {count} rows")
    headers = {"Content-Range": render.content_range(0, count, count if "count" in prefer else None)}
    applied = [f"{name}={prefer[name]}" for name in ("return", "count", "resolution", "missing", "handling",
                                                      "max-affected", "tx") if name in prefer]
    if applied:
        headers["Preference-Applied"] = ", ".join(applied)
    if prefer.get("return") == "representation":
        node = replace(params.root, conditions=[], order=None, limit=None, offset=None)
        return render.rows(plan.shaped(view, spec, node, written.rows), media, status, headers)
    if prefer.get("return") == "headers-only" and request.method == "POST" and count == 1:
        filters = "&".join(f"{quote(c.name)}=eq.{quote(str(v))}" for c, v in zip(spec.primary_key, written.keys[0]))
        headers["Location"] = f"/{quote(spec.name)}?{filters}"
    # A POST answers its status with no body (PostgREST: 201, or 200 for a merge that inserted
    # nothing); a PATCH, PUT or DELETE without the rows answers 204.
    return Response(status=status if status == 201 or request.method == "POST" else 204, headers=headers)


def _filtered(gateway, spec: TableSpec, root: Node, verb: str):
    """The write's filter, and the key it names when it names exactly one row by its key (which
    a write with If-Match / If-None-Match needs); no filter at all is refused, as pg-safeupdate
    refuses it under PostgREST."""
    if any(order.embed is not None for order in root.order or ()):
        raise grammar.not_implemented(f"ordering the rows of a {verb} by a related table's column")
    condition = plan.where(spec, root.conditions, gateway.config)
    if condition is None:
        raise PostgrestError(400, "21000", f"{verb} requires a WHERE clause",
                             hint="Tiddly changes or deletes rows by filter only: add one, e.g. ?id=eq.1")
    if "If-Match" not in request.headers and "If-None-Match" not in request.headers:
        return condition, None
    key = _key_filter(spec, root) if root.limit is None and root.offset is None else None
    if key is None:
        conditional.refuse_conditions(f"{verb} here filters by something other than exactly the primary key")
    return None, key


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
