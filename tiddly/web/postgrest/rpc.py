"""Stored functions in PostgREST's grammar: ``POST /rpc/<fn>`` with JSON arguments, ``GET`` and
``HEAD`` with them in the query string (an array as ``{a,b}``), as postgrest-js and postgrest-py
call them.

The function is chosen among its overloads by the names of the arguments, as PostgREST chooses
(PGRST203 when several fit, PGRST202 when none does); a function whose one parameter has no name
takes the raw body. A function that answers rows takes every read filter, ``select`` (embeds
along its result table's relations), ``order``, ``limit``/``offset``/``Range`` and
``Prefer: count=``; ``Prefer: handling=strict, max-affected=N`` refuses (and undoes) a call that
answered more rows. The call is a ``services.functions.Call`` run by the app's executor, which
decides from it whether the caller may (a read key: only what the database says cannot write).
"""
from __future__ import annotations

import difflib
import threading

from flask import Response, g, request

from tiddly import jsonio
from tiddly.errors import BadJson, UnknownColumn
from tiddly.registry import Registry, TableSpec
from tiddly.services import access, functions, limits
from tiddly.services.functions import (
    Call,
    Called,
    Catalog,
    FunctionFailed,
    call_sql,
    result_kind,
    result_spec,
)
from tiddly.storage.functions import Function
from tiddly.web.body import raw_body
from tiddly.web.postgrest import asked, grammar, plan, render
from tiddly.web.postgrest.grammar import Media, Node, PostgrestError

METHODS = ["GET", "HEAD", "POST"]
# Query-string keys that never name an argument (for GET, every other key that names a parameter does).
RESERVED = ("select", "order", "limit", "offset", "or", "and", "not.or", "not.and", "columns", "on_conflict")
# A parameter without a name takes the whole body, by the body's media type (PostgREST's rule).
UNNAMED_TYPES = {"application/json": ("json", "jsonb"), "text/plain": ("text",), "text/xml": ("xml",),
                 "application/octet-stream": ("bytea",)}
AMBIGUOUS_HINT = "Try renaming the parameters or the function itself in the database so function overloading " \
                 "can be resolved"


class Functions:
    """The database's functions as the dialect serves them: the catalog (``/rpc``), and the
    registry with computed fields and relationships that the dialect's reads plan against. Both
    are read once, at the first request that needs them, and never change after (module doc of
    ``services/functions.py``)."""

    def __init__(self, gateway):
        self.catalog = Catalog(gateway.db, gateway.registry)
        self._plain = gateway.registry
        self._registry: Registry | None = None if self.catalog.dialect_name == "postgresql" else gateway.registry
        self._lock = threading.Lock()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            with self._lock:
                if self._registry is None:
                    self._registry = functions.with_functions(self._plain, self.catalog)
        return self._registry

    def view(self, principal) -> Registry:
        """The registry as ``principal`` sees it (``access.view``): a key limited to some tables
        keeps their computed fields, but embeds no function (its relation leads to a table of its own)."""
        return access.view(self.registry, principal)


def install(gateway) -> Functions:
    """The dialect's functions, and the call's runner on the executor."""
    gateway.executor.register(Call, functions.run)
    return Functions(gateway)


def respond(gateway, served: Functions, name: str) -> Response:
    if request.method == "OPTIONS":
        return Response(status=200, headers={"Allow": ", ".join(["OPTIONS", *METHODS])})
    if request.method not in METHODS:
        raise PostgrestError(405, "PGRST101", f"Cannot use the {request.method[:20]} method on RPC",
                             headers={"Allow": ", ".join(METHODS)})
    catalog = served.catalog
    post = request.method == "POST"
    asked.profile(request.headers.get("Content-Profile" if post else "Accept-Profile"))
    media = grammar.parse_accept(request.headers.get("Accept"))
    prefer = asked.prefer()
    overloads = catalog.overloads(name)
    body = raw_body() if post else b""
    arguments, raw, rest = _body_arguments(body) if post else _arguments(overloads)
    function = choose(catalog, name, overloads, arguments, post)
    if raw is not None or (post and _unnamed(function) and body.strip()):
        raw, arguments = body.decode("utf-8", "replace"), {}
    view = served.view(g.principal)
    root = grammar.parse_params(rest, gateway.config.max_where_depth).root
    try:
        call = _call(gateway, view, served, function, arguments, raw, root, prefer)
        return gateway.executor.execute(call, g.principal,
                                        lambda called: _answer(view, root, called, media, prefer),
                                        rollback=prefer.get("tx") == "rollback")
    except FunctionFailed as exc:
        raise PostgrestError(exc.status, exc.sqlstate or "P0001", exc.message, exc.detail, exc.hint) from None
    except UnknownColumn as exc:  # a POST here reads: not a written body's unknown key (PGRST204)
        raise PostgrestError(400, "42703", exc.message) from None


# -- arguments --------------------------------------------------------------------------------

def _body_arguments(body: bytes) -> tuple[dict, str | None, list]:
    """A POST's arguments: a JSON object's keys (no body: none); any other media type is the raw
    argument of a function whose one parameter has no name. The query string holds the filters."""
    rest = list(request.args.items(multi=True))
    mimetype = request.mimetype or "application/json"
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        return {}, body.decode("utf-8", "replace"), rest
    if not body.strip():
        return {}, None, rest
    try:
        payload = jsonio.loads(body)
    except BadJson as exc:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json", exc.message) from None
    if not isinstance(payload, dict):
        raise PostgrestError(400, "PGRST102", "the arguments of a function call are one JSON object",
                             "Tiddly calls a function once per request: send {\"name\": value, ...}")
    return payload, None, rest


def _arguments(overloads: tuple[Function, ...]) -> tuple[dict, None, list]:
    """A GET's arguments: each query-string key that names a parameter of the function; the rest
    are filters and the read's own keys."""
    names = {p.name for f in overloads for p in f.parameters if p.name}
    arguments, rest = {}, []
    for key, value in request.args.items(multi=True):
        if key in names and key not in RESERVED:
            if key in arguments:
                raise grammar.parse_error("parameter", key, f"the argument {key!r} is given twice")
            arguments[key] = value
        else:
            rest.append((key, value))
    return arguments, None, rest


def _unnamed(function: Function) -> bool:
    return len(function.parameters) == 1 and function.parameters[0].name is None


# -- choosing among overloads ------------------------------------------------------------------

def choose(catalog: Catalog, name: str, overloads: tuple[Function, ...], arguments: dict, post: bool) -> Function:
    """The one overload the argument names fit (PostgREST's rule); a function whose single parameter
    has no name fits a POST whose body's media type matches its type, when no other fits."""
    keys = set(arguments)
    callable_ = [f for f in overloads if _callable(f)]
    fitting = [f for f in callable_ if _fits(f, keys, post)]
    fallback = [f for f in callable_ if f not in fitting and _takes_body(f, post)]
    found = fitting or fallback
    if len(found) == 1:
        return found[0]
    if found:
        listed = [f"{asked.SCHEMA}.{f.name}({_signature(f)})"
                  for f in sorted(found, key=lambda f: (len(f.parameters), _signature(f)))]
        raise PostgrestError(300, "PGRST203", "Could not choose the best candidate function between: "
                             + ", ".join(listed), None, AMBIGUOUS_HINT)
    raise _not_found(catalog, name, callable_, sorted(keys), post)


def _signature(function: Function) -> str:
    return ", ".join(f"{p.name or ''} => {p.type}" for p in function.parameters)


def _callable(function: Function) -> bool:
    """A function PostgREST's schema cache holds: every parameter named, or exactly one without a
    name whose type a raw body can fill."""
    unnamed = [p for p in function.parameters if p.name is None]
    return not unnamed or (len(unnamed) == 1 and unnamed[0].type in ("bytea", "json", "jsonb", "text", "xml"))


def _fits(function: Function, keys: set[str], post: bool) -> bool:
    params = function.parameters
    if not params:
        return not keys and not (post and request.mimetype in ("text/plain", "text/xml", "application/octet-stream"))
    required = {p.name or "" for p in params if p.required or p.mode == "variadic" and p.default is None}
    optional = {p.name or "" for p in params} - required
    return required <= keys and keys - required <= optional


def _takes_body(function: Function, post: bool) -> bool:
    params = function.parameters
    return post and len(params) == 1 and params[0].name is None \
        and params[0].type in UNNAMED_TYPES.get(request.mimetype or "application/json", ())


def _not_found(catalog: Catalog, name: str, overloads: list[Function], keys: list[str], post: bool) -> PostgrestError:
    qualified = f"{asked.SCHEMA}.{name[:60]}"
    listed = " without parameters" if not keys else \
        f" with parameter{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
    raw = post and (request.mimetype or "application/json") in ("text/plain", "text/xml", "application/octet-stream")
    if raw:
        kind = UNNAMED_TYPES[request.mimetype][0]
        message = f"Could not find the function {qualified} in the schema cache"
        details = f"Searched for the function {qualified} with a single unnamed {kind} parameter"
    else:
        shown = " without parameters" if not keys else f"({', '.join(keys)})"
        message = f"Could not find the function {qualified}{shown} in the schema cache"
        details = f"Searched for the function {qualified}{listed}" \
            + (" or with a single unnamed json/jsonb parameter" if post else "")
    details += ", but no matches were found in the schema cache."
    if catalog.dialect_name == "sqlite":
        details += " SQLite stores no functions: Tiddly serves none there."
    return PostgrestError(404, "PGRST202", message, details, _hint(catalog, name, overloads, keys))


def _hint(catalog: Catalog, name: str, overloads: list[Function], keys: list[str]) -> str | None:
    """PostgREST's "Perhaps you meant": the closest parameter list of the same function, else the
    closest name among the others."""
    prefix = f"Perhaps you meant to call the function {asked.SCHEMA}."
    if overloads:
        lists = [", ".join(p.name or "" for p in f.parameters) for f in overloads]
        close = difflib.get_close_matches(", ".join(keys), lists, n=1, cutoff=0.0)
        return f"{prefix}{name}({close[0]})" if close else None
    names = [n for n in catalog.names() if n != name and any(_callable(f) for f in catalog.overloads(n))]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
    return prefix + close[0] if close else None


# -- the operation --------------------------------------------------------------------------------

def _call(gateway, view, served: Functions, function: Function, arguments: dict, raw: str | None, root: Node,
          prefer: dict) -> Call:
    catalog = served.catalog
    tables = catalog.tables(function)
    kind = result_kind(function)
    if kind in ("none", "value") or (function.kind == "procedure"):
        if kind in ("none", "value") and (root.conditions or root.embeds or root.fields):
            raise PostgrestError(400, "PGRST100", f"'{function.name}' answers one value: it takes no filter or select")
        planner = _planner(gateway, view, root, prefer) if function.kind == "procedure" else None
        return Call(function, arguments, tables, raw=raw, plan_rows=planner,
                    sql=call_sql(catalog, function, arguments, raw), unreadable=catalog.unreadable(function))
    spec = result_spec(catalog, served.registry, function, arguments, raw)
    # Its rows embed only what the caller may see (a key limited to some tables: relations among them).
    spec = spec.seeing(view.tables)
    return Call(function, arguments, tables, returning=_planner(gateway, view, root, prefer)(spec), raw=raw)


def _planner(gateway, view, root: Node, prefer: dict):
    """How the rows of the call are read once their table is known: ``select``, filters, order, page."""
    def planned(spec: TableSpec):
        plan.resolve(view, spec, root)
        offset, limit = asked.page(root, gateway.config.max_limit)
        read = plan.read(view, spec, root, gateway.config, limit, offset, "count" in prefer)
        limits.check(read, gateway.config)
        return read
    return planned


# -- the answer -------------------------------------------------------------------------------------

def _answer(view, root: Node, called: Called, media: Media, prefer: dict) -> Response:
    """In the call's transaction: an error here (max-affected) undoes what the call wrote."""
    headers = {}
    applied = [f"{name}={prefer[name]}" for name in ("count", "handling", "max-affected", "tx") if name in prefer]
    if applied:
        headers["Preference-Applied"] = ", ".join(applied)
    if called.kind == "none":
        return Response(status=204, headers=headers)
    if called.kind == "value":
        headers["Content-Range"] = render.content_range(0, 1, 1 if "count" in prefer else None)
        return Response(jsonio.dumps(called.value), 200, content_type=render.JSON_TYPE, headers=headers)
    rows = called.rows
    most = prefer.get("max-affected") if prefer.get("handling") == "strict" else None
    if most is not None and len(rows) > int(most):
        raise PostgrestError(400, "PGRST124", "Query result exceeds max-affected preference constraint",
                             f"The query affects {len(rows)} rows")
    rows = plan.shaped(view, called.table, root, rows)
    if called.kind == "row" and media.kind == "json":  # one row, or none: an object, or null
        body = rows[0] if rows else None
        return Response(jsonio.dumps(body), 200, content_type=render.JSON_TYPE, headers=headers)
    offset = called.offset
    total = called.count if "count" in prefer else None
    headers["Content-Range"] = render.content_range(offset, len(rows), total)
    status = 206 if total is not None and len(rows) < total else 200
    return render.rows(rows, media, status, headers)
