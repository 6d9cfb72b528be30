"""The OpenAPI 3.1 document, generated from the registry (pure: no Flask, no session).

Per exposed table: its paths and verbs, a row schema (types, nullability, hidden
columns left out, read-only and write-only columns marked), insert/update bodies,
the query body and parameters. Shared parts: the envelope, the error codes from
``errors.ERROR_CODES``, the query operators from ``query.OPERATORS``.

FETCH and QUERY are not OpenAPI operations: the document gives the same query as
``POST`` with ``X-HTTP-Method-Override: FETCH`` and as ``GET`` with query parameters.
"""
from __future__ import annotations

import re
from typing import Any

from tiddly.config import Config
from tiddly.errors import ERROR_CODES, PreconditionFailed
from tiddly.registry import ColumnSpec, Policy, Registry, TableSpec
from tiddly.services.auth import SCOPES
from tiddly.services.query import MAX_OFFSET, OPERATORS
from tiddly.web.api.language import QUERY_KEYS

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/"


def document(registry: Registry, config: Config, bearer: bool = False, version: str = "0.1.0") -> dict:
    """The whole document; ``bearer`` adds the API-key security scheme (keys are on)."""
    names = _component_names(registry)
    schemas = {**_shared_schemas(), **{k: v for spec in registry.tables.values()
                                        for k, v in _table_schemas(spec, names[spec.name], config).items()}}
    paths = {**_meta_paths()}
    for spec in registry.tables.values():
        paths.update(_table_paths(spec, names[spec.name], config))
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Tiddly", "version": version,
                 "description": "A table-driven REST gateway. FETCH and QUERY /<table> take the query body; "
                                "here they appear as POST with X-HTTP-Method-Override."},
        "paths": paths,
        "components": {"schemas": schemas, "responses": _error_responses()},
    }
    if bearer:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key from `tiddly keys create`"}}
        doc["security"] = [{"bearer": []}]
    return doc


# -- names ---------------------------------------------------------------------

def _component_names(registry: Registry) -> dict[str, str]:
    """Component names allow only [A-Za-z0-9._-]; table names may hold anything."""
    names, taken = {}, set()
    for name in registry.tables:
        base = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "table"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        names[name] = candidate
    return names


def _path(table: str) -> str:
    # Braces would read as a template; everything else is percent-encoded by clients.
    return "/" + table.replace("{", "%7B").replace("}", "%7D")


# -- column and row schemas ------------------------------------------------------

def column_schema(col: ColumnSpec) -> dict:
    schema = _kind_schema(col)
    if col.nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"] if isinstance(schema["type"], str) else schema["type"] + ["null"]
    if col.policy is Policy.READ_ONLY:
        schema["readOnly"] = True
    elif col.policy is Policy.WRITE_ONLY_HASHED:
        schema["writeOnly"] = True
    return schema


def _kind_schema(col: ColumnSpec) -> dict:
    kind = col.kind
    if kind == "integer":
        low, high = col.int_range
        return {"type": "integer", "minimum": low, "maximum": high}
    if kind == "string":
        limit = col.max_length
        return {"type": "string", **({"maxLength": limit} if limit else {})}
    simple = {
        "number": {"type": "number"},
        "decimal": {"type": ["number", "string"], "description": "a number, or a numeric string"},
        "boolean": {"type": "boolean"},
        "date": {"type": "string", "format": "date"},
        "datetime": {"type": "string", "description": "an ISO 8601 date-time"},
        "time": {"type": "string", "description": "an ISO 8601 time"},
        "binary": {"type": "string", "contentEncoding": "base64"},
        "json": {"description": "any JSON value"},
    }
    return dict(simple.get(kind, {"type": "string"}))


def _table_schemas(spec: TableSpec, name: str, config: Config) -> dict:
    visible = [c for c in spec.columns.values() if c.policy is not Policy.HIDDEN]
    writable = [c for c in spec.columns.values() if c.writable]
    pk_names = {c.name for c in spec.primary_key}
    schemas = {
        name: {"type": "object", "description": f"a row of '{spec.name}'",
               "properties": {c.name: column_schema(c) for c in visible}},
        f"{name}.query": _query_schema(spec, name, config),
        f"{name}.where": _where_schema(spec, name),
    }
    if "POST" in spec.verbs:
        schemas[f"{name}.insert"] = _body(writable, [c.name for c in writable if c.required])
        schemas[f"{name}.update"] = _body(writable, [])
        keyed = writable + [c for c in spec.primary_key if c.name not in {w.name for w in writable}]
        schemas[f"{name}.upsert"] = _body(keyed, sorted(pk_names))
    return schemas


def _body(columns: list[ColumnSpec], required: list[str]) -> dict:
    schema = {"type": "object", "additionalProperties": False,
              "properties": {c.name: {k: v for k, v in column_schema(c).items() if k != "readOnly"}
                             for c in columns}}
    if required:
        schema["required"] = required
    return schema


# -- the query language --------------------------------------------------------------

def _query_schema(spec: TableSpec, name: str, config: Config) -> dict:
    known = {
        "where": {"$ref": f"{_REF}{name}.where"},
        "orderby": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                    "description": 'e.g. "email desc, name"; quote names with spaces: "\\"my col\\" desc"'},
        "select": {"oneOf": [{"type": "string"},
                             {"type": "array", "minItems": 1,
                              "items": {"enum": [c.name for c in spec.readable]}}]},
        "limit": {"type": "integer", "minimum": 0, "maximum": config.max_limit},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        "count": {"type": "boolean"},
    }
    properties = {key: known.get(key, {}) for key in QUERY_KEYS}
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _where_schema(spec: TableSpec, name: str) -> dict:
    # Nested conditions are plain objects here: a recursive schema makes test generators crawl.
    ref = {"type": "object", "description": f"a where object of '{spec.name}'"}
    properties: dict[str, Any] = {
        "and": {"type": "array", "minItems": 1, "items": ref},
        "or": {"type": "array", "minItems": 1, "items": ref},
        "not": ref,
    }
    for col in spec.readable:
        if col.name in properties:
            continue
        value = {k: v for k, v in _kind_schema(col).items() if k in ("type", "format", "maxLength", "minimum",
                                                                       "maximum", "contentEncoding")}
        properties[col.name] = {"oneOf": [value, {"type": "null"}, _operators(value)]}
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "description": "column: value (equality), or column: {operator: operand}; and/or/not combine"}


def _operators(value: dict) -> dict:
    shapes = {
        "value": value,
        "nullable": {"anyOf": [value, {"type": "null"}]},
        "list": {"type": "array", "items": value},
        "pair": {"type": "array", "items": value, "minItems": 2, "maxItems": 2},
        "pattern": {"type": "string"},
        "is": {"enum": [None, True, False]},
        "structure": {},
        "range": {"type": "string"},
        "regex": {"type": "string"},
        "search": {"oneOf": [{"type": "string"},
                             {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}]},
    }
    return {"type": "object", "minProperties": 1, "additionalProperties": False,
            "properties": {op.name: {**shapes[_shape(op)], "description": op.doc} for op in OPERATORS.values()}}


def _shape(op) -> str:
    return "nullable" if op.name in ("eq", "ne") else op.accepts


def _query_parameters(spec: TableSpec, config: Config) -> list[dict]:
    described = {
        "where": ({"type": "string", "contentMediaType": "application/json"}, "the where object, as JSON"),
        "orderby": ({"type": "string"}, 'e.g. "email desc, name"'),
        "select": ({"type": "string"}, "comma-separated column names"),
        "limit": ({"type": "integer", "minimum": 0, "maximum": config.max_limit},
                  f"rows per page (default {config.default_limit})"),
        "offset": ({"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}, "rows to skip"),
        "count": ({"type": "boolean"}, "also return the number of matching rows"),
    }
    return [{"name": key, "in": "query", "required": False,
             "schema": described.get(key, ({"type": "string"}, ""))[0],
             "description": described.get(key, ({}, f"see the query body's '{key}'"))[1]}
            for key in QUERY_KEYS]


# -- envelope and errors ------------------------------------------------------------

def _shared_schemas() -> dict:
    return {
        "Error": {
            "type": "object", "required": ["status", "error", "code"],
            "properties": {"status": {"const": "error"}, "error": {"type": "string"},
                           "code": {"enum": list(ERROR_CODES)}, "details": {"type": "object"}},
        },
    }


def _statuses() -> list[int]:
    return sorted({status for status, _doc in ERROR_CODES.values()})


def _error_responses() -> dict:
    responses = {}
    for status in _statuses():
        codes = [f"`{code}`: {doc}" for code, (s, doc) in ERROR_CODES.items() if s == status]
        responses[f"E{status}"] = {
            "description": "an error; code is one of:\n- " + "\n- ".join(codes),
            "content": {"application/json": {"schema": {"$ref": f"{_REF}Error"}}},
        }
    return responses


# Answered by the HTTP server before Tiddly sees the request, so not in the error envelope.
_URI_TOO_LONG = {"description": "the request line (path and query string) is longer than the HTTP server "
                                "reads (under 64 KiB with `tiddly serve`, 4,094 bytes under gunicorn); "
                                "send a long query as a FETCH body instead"}


def _errors(exclude: tuple[int, ...] = (), conditional: bool = False) -> dict:
    """The error responses; 412 only where a write of one row by key takes If-Match / If-None-Match."""
    exclude = exclude if conditional else (*exclude, PreconditionFailed.status)
    errors = {str(s): {"$ref": f"#/components/responses/E{s}"} for s in _statuses() if s not in exclude}
    return {**errors, "414": _URI_TOO_LONG}


_ETAG = {"ETag": {"description": "the row's entity tag (of one row written or read): send it in If-Match to "
                                 "write only this version of the row",
                  "schema": {"type": "string"}}}
_CONDITIONS = [
    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "write only if the row's ETag is one of these (`*`: if the row exists); else a 412"},
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "write only if the row's ETag is none of these (`*`: only if there is no such row); "
                    "else a 412"},
]


def _with_etag(response: dict) -> dict:
    return {**response, "headers": _ETAG}


def _success(description: str, optional: tuple[str, ...] = (), **properties) -> dict:
    schema = {"type": "object", "required": ["status", *(p for p in properties if p not in optional)],
              "properties": {"status": {"const": "success"}, **properties}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _found(rows: dict, description: str = "the matching rows") -> dict:
    return _success(description, optional=("count",), data=rows, count={"type": "integer"})


def _json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


# -- paths -------------------------------------------------------------------------

_WHOAMI = {"type": "object", "required": ["kind", "name", "scope", "tables"], "properties": {
    "kind": {"enum": ["key", "login", "open"]}, "name": {"type": "string"},
    "scope": {"enum": list(SCOPES)},
    "tables": {"type": ["array", "null"], "items": {"type": "string"},
               "description": "the tables the caller may use; null: every exposed table"}}}


def _meta_paths() -> dict:
    def meta(summary, **properties):
        return {"get": {"summary": summary, "tags": ["meta"], "responses": {
            "200": _success(summary, **properties), **_errors()}}}
    return {
        "/-/health": meta("the database answers", database={"type": "string"}),
        "/-/tables": meta("the exposed tables and their columns",
                          data={"type": "array", "items": {"type": "object"}}),
        "/-/whoami": meta("who is asking: the caller's kind, name, scope and tables", data=_WHOAMI),
        "/-/openapi.json": {"get": {"summary": "this document", "tags": ["meta"], "responses": {
            "200": {"description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }


def _table_paths(spec: TableSpec, name: str, config: Config) -> dict:
    row = {"$ref": f"{_REF}{name}"}
    pk = _pk_schema(spec)
    rows = {"type": "array", "items": row}
    tag = [spec.name]
    collection: dict[str, Any] = {
        "get": {"summary": f"query '{spec.name}' (the query in the URL)", "tags": tag,
                "operationId": f"{name}.query_url", "parameters": _query_parameters(spec, config),
                "responses": {"200": _found(rows),
                              **_errors()}},
    }
    override = {"name": "X-HTTP-Method-Override", "in": "header", "required": False,
                "schema": {"enum": ["FETCH", "QUERY"]},
                "description": "FETCH (or QUERY): the body is a query, not a row to insert"}
    query_body = {"$ref": f"{_REF}{name}.query"}
    if "POST" not in spec.verbs:
        collection["post"] = {
            "summary": f"query '{spec.name}' (FETCH /{spec.name}, QUERY /{spec.name})", "tags": tag,
            "operationId": f"{name}.fetch", "parameters": [{**override, "required": True}],
            "requestBody": _json_body(query_body, required=False),
            "responses": {"200": _found(rows), **_errors()}}
        if not spec.primary_key:
            return {_path(spec.name): collection}
        row_path = _row_path(spec, name, row, pk)
        return {_path(spec.name): collection,
                _path(spec.name) + "/{pk}": {"parameters": row_path["parameters"], "get": row_path["get"]}}
    insert = {"$ref": f"{_REF}{name}.insert"}
    collection["post"] = {
        "summary": f"insert into '{spec.name}' (an object, or an array for one all-or-nothing bulk insert); "
                   "with X-HTTP-Method-Override: FETCH, query it instead (FETCH/QUERY)",
        "tags": tag, "operationId": f"{name}.insert", "parameters": [override],
        "requestBody": _json_body({"oneOf": [insert, {"type": "array", "minItems": 1, "items": insert},
                                             query_body]}),
        "responses": {
            "200": _found(rows, "with X-HTTP-Method-Override: the matching rows"),
            "201": {"description": "created", "headers": _ETAG, "content": {"application/json": {"schema": {"oneOf": [
                _success("", id=pk, data=row)["content"]["application/json"]["schema"],
                _success("", ids={"type": "array", "items": pk},
                         count={"type": "integer"})["content"]["application/json"]["schema"]]}}}},
            **_errors()},
    }
    collection["put"] = {
        "summary": f"upsert into '{spec.name}' by the primary key in the body", "tags": tag,
        "operationId": f"{name}.upsert", "parameters": _CONDITIONS,
        "requestBody": _json_body({"$ref": f"{_REF}{name}.upsert"}),
        "responses": {"200": _linked(spec, name, _with_etag(_success("updated", id=pk, data=row))),
                      "201": _linked(spec, name, _with_etag(_success("created", id=pk, data=row))),
                      **_errors(conditional=True)}}
    pk_object = {"type": "object", "additionalProperties": False,
                 "required": [c.name for c in spec.primary_key],
                 "properties": {c.name: _kind_schema(c) for c in spec.primary_key}}
    collection["delete"] = {
        "summary": f"delete the rows of '{spec.name}' a where matches (or one row by its primary key, "
                   "which If-Match and If-None-Match may condition)",
        "tags": tag, "operationId": f"{name}.delete_where", "parameters": _CONDITIONS,
        "requestBody": _json_body({"oneOf": [
            {"type": "object", "required": ["where"], "additionalProperties": False,
             "properties": {"where": {"$ref": f"{_REF}{name}.where", "minProperties": 1}}},
            pk_object]}),
        "responses": {"200": {"description": "deleted", "content": {"application/json": {"schema": {"oneOf": [
            _success("", count={"type": "integer"})["content"]["application/json"]["schema"],
            _success("", id=pk)["content"]["application/json"]["schema"]]}}}}, **_errors(conditional=True)}}
    return {_path(spec.name): collection, _path(spec.name) + "/{pk}": _row_path(spec, name, row, pk)}


def _linked(spec: TableSpec, name: str, response: dict) -> dict:
    """Links from a written row's id to its row operations (for stateful testers and client generators)."""
    if len(spec.primary_key) != 1:
        return response  # a composite id is a list; the path wants it comma-joined, which a link cannot say
    response["links"] = {f"{verb}_row": {"operationId": f"{name}.{verb}",
                                         "parameters": {"pk": "$response.body#/id"}}
                         for verb in ("get", "patch", "delete")}
    return response


def _pk_schema(spec: TableSpec) -> dict:
    if len(spec.primary_key) == 1:
        return _kind_schema(spec.primary_key[0])
    return {"type": "array", "items": {}, "minItems": len(spec.primary_key), "maxItems": len(spec.primary_key)}


def _row_path(spec: TableSpec, name: str, row: dict, pk: dict) -> dict:
    tag = [spec.name]
    columns = ", ".join(c.name for c in spec.primary_key)
    single = len(spec.primary_key) == 1
    parameter = {"name": "pk", "in": "path", "required": True,
                 "schema": _path_pk_schema(spec.primary_key[0]) if single else {"type": "string"},
                 "description": f"the primary key ({columns})" + ("" if single else ", comma-separated")}
    found = _with_etag(_success("the row", data=row))
    return {
        "parameters": [parameter],
        "get": {"summary": f"one row of '{spec.name}'", "tags": tag, "operationId": f"{name}.get",
                "responses": {"200": found, **_errors()}},
        "put": {"summary": "upsert: update the given columns, or create the row", "tags": tag,
                "operationId": f"{name}.put", "parameters": _CONDITIONS,
                "requestBody": _json_body({"$ref": f"{_REF}{name}.update"}),
                "responses": {"200": _with_etag(_success("updated", id=pk, data=row)),
                              "201": _with_etag(_success("created", id=pk, data=row)), **_errors(conditional=True)}},
        "patch": {"summary": "update the given columns", "tags": tag, "operationId": f"{name}.patch",
                  "parameters": _CONDITIONS, "requestBody": _json_body({"$ref": f"{_REF}{name}.update"}),
                  "responses": {"200": _with_etag(_success("updated", id=pk, data=row)),
                                **_errors(conditional=True)}},
        "delete": {"summary": "delete the row", "tags": tag, "operationId": f"{name}.delete",
                   "parameters": _CONDITIONS,
                   "responses": {"200": _success("deleted", id=pk), **_errors(conditional=True)}},
    }


def _path_pk_schema(col: ColumnSpec) -> dict:
    schema = _kind_schema(col)
    return schema if col.kind == "integer" else {"type": "string"}
