"""``GET <path>/``: the dialect described as PostgREST describes itself, in Swagger 2.0.

PostgREST's root answers a Swagger 2.0 document (not OpenAPI 3), and the tools that
read a PostgREST root expect that shape: ``definitions`` per table, shared
``parameters`` (``select``, ``order``, ``Range``, ``Prefer``, one ``rowFilter`` per
column), one path per table. Tiddly's own API keeps its OpenAPI 3.1 document at
``/-/openapi.json``. Built from the registry: hidden columns never appear,
read-only ones are marked, write-only ones are said to be never returned.
"""
from __future__ import annotations

from typing import Any

from tiddly.registry import ColumnSpec, Policy, Registry, TableSpec

_TYPES = {
    "integer": {"type": "integer"}, "number": {"type": "number", "format": "double"},
    "decimal": {"type": "number"}, "string": {"type": "string"}, "boolean": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"}, "date": {"type": "string", "format": "date"},
    "time": {"type": "string", "format": "time"}, "binary": {"type": "string", "format": "byte"},
    "json": {},
}
_SHARED = {
    "select": {"name": "select", "in": "query", "required": False, "type": "string",
               "description": "columns and embedded tables: *,alias:column,relation(columns)"},
    "order": {"name": "order", "in": "query", "required": False, "type": "string",
              "description": "column[.asc|.desc][.nullsfirst|.nullslast], comma-separated; a to-one "
                             "embed's column as relation(column)"},
    "limit": {"name": "limit", "in": "query", "required": False, "type": "string"},
    "offset": {"name": "offset", "in": "query", "required": False, "type": "string"},
    "range": {"name": "Range", "in": "header", "required": False, "type": "string",
              "description": "rows as first-last, zero-based, e.g. 0-9"},
    "rangeUnit": {"name": "Range-Unit", "in": "header", "required": False, "type": "string", "default": "items"},
    "preferCount": {"name": "Prefer", "in": "header", "required": False, "type": "string",
                    "enum": ["count=exact", "count=planned", "count=estimated"]},
    "preferReturn": {"name": "Prefer", "in": "header", "required": False, "type": "string",
                     "enum": ["return=representation", "return=minimal", "return=headers-only"]},
    "preferPost": {"name": "Prefer", "in": "header", "required": False, "type": "string",
                   "enum": ["return=representation", "return=minimal", "return=headers-only",
                            "resolution=merge-duplicates", "resolution=ignore-duplicates", "missing=default"]},
    "columns": {"name": "columns", "in": "query", "required": False, "type": "string",
                "description": "the body's keys to write, comma-separated"},
    "on_conflict": {"name": "on_conflict", "in": "query", "required": False, "type": "string",
                    "description": "the unique columns an upsert matches on (default: the primary key)"},
}


def document(registry: Registry, base_path: str, version: str = "0.1.0") -> dict:
    tables = list(registry.tables.values())
    parameters = dict(_SHARED)
    for spec in tables:
        parameters[f"body.{spec.name}"] = {"name": spec.name, "in": "body", "required": False,
                                           "schema": {"$ref": _ref(spec)}}
        for col in spec.readable:
            parameters[f"rowFilter.{spec.name}.{col.name}"] = {
                "name": col.name, "in": "query", "required": False, "type": "string",
                "description": f"a filter on {col.kind} column '{col.name}': op.value, e.g. eq.1"}
    return {
        "swagger": "2.0",
        "info": {"title": "Tiddly: PostgREST dialect", "version": version,
                 "description": "PostgREST's query grammar over Tiddly's tables; see docs/postgrest.md"},
        "basePath": base_path or "/",
        "consumes": ["application/json"],
        "produces": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "securityDefinitions": {
            "apikey": {"type": "apiKey", "in": "header", "name": "apikey",
                       "description": "a Tiddly API key or login token (or send Authorization: Bearer <key>)"}},
        "paths": {"/": {"get": {"summary": "this document", "produces": ["application/openapi+json"],
                                "responses": {"200": {"description": "OK"}}}},
                  **{_path(spec): _operations(spec) for spec in tables}},
        "definitions": {spec.name: _definition(spec) for spec in tables},
        "parameters": parameters,
    }


def _definition(spec: TableSpec) -> dict:
    properties = {c.name: _property(c) for c in spec.columns.values() if c.policy is not Policy.HIDDEN}
    required = [c.name for c in spec.columns.values() if c.required and c.policy is not Policy.HIDDEN]
    definition: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        definition["required"] = required
    return definition


def _property(col: ColumnSpec) -> dict:
    schema = dict(_TYPES.get(col.kind, {"type": "string"}))
    if col.kind == "integer":
        schema["format"] = "int64" if col.int_bits > 32 else "int32"
    if col.kind == "string" and col.max_length:
        schema["maxLength"] = col.max_length
    if col.policy is Policy.READ_ONLY:
        schema["readOnly"] = True
    if col.column.primary_key:
        schema["description"] = "Note: This is a Primary Key."
    if col.policy is Policy.WRITE_ONLY_HASHED:
        schema["description"] = "write-only: stored hashed, never returned"
    return schema


def _operations(spec: TableSpec) -> dict:
    filters = [{"$ref": f"#/parameters/{_escape(f'rowFilter.{spec.name}.{c.name}')}"} for c in spec.readable]
    shared = {name: {"$ref": f"#/parameters/{name}"} for name in _SHARED}
    body = {"$ref": f"#/parameters/{_escape(f'body.{spec.name}')}"}
    rows = {"type": "array", "items": {"$ref": _ref(spec)}}
    operations: dict[str, Any] = {"get": {
        "tags": [spec.name],
        "parameters": filters + [shared[n] for n in ("select", "order", "range", "rangeUnit", "offset", "limit",
                                                      "preferCount")],
        "responses": {"200": {"description": "OK", "schema": rows}, "206": {"description": "Partial Content"}}}}
    if "POST" in spec.verbs:
        operations["post"] = {"tags": [spec.name], "consumes": ["application/json", "text/csv"],
                              "parameters": [body, shared["select"], shared["columns"], shared["on_conflict"],
                                             shared["preferPost"]],
                              "responses": {"201": {"description": "Created"}}}
        for verb in ("patch", "delete"):
            operations[verb] = {"tags": [spec.name],
                                "parameters": filters + ([body] if verb == "patch" else [])
                                + [shared[n] for n in ("order", "limit", "offset", "preferReturn")],
                                "responses": {"200": {"description": "OK", "schema": rows},
                                              "204": {"description": "No Content"}}}
    return operations


def _path(spec: TableSpec) -> str:
    return "/" + spec.name.replace("{", "%7B").replace("}", "%7D")


def _ref(spec: TableSpec) -> str:
    return f"#/definitions/{_escape(spec.name)}"


def _escape(name: str) -> str:
    """A name as one JSON-pointer step."""
    return name.replace("~", "~0").replace("/", "~1")
