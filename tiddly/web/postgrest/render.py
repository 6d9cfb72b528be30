"""Answers in PostgREST's shape: rows as a JSON array, one object or CSV, and every error as
``{"code", "message", "details", "hint"}`` (all four keys, null when empty) with PostgREST's
code and status. Tiddly's typed errors are mapped to PostgREST's in one table, ``CODES``.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterator

from flask import Response, current_app, g, request
from sqlalchemy import Index, UniqueConstraint
from werkzeug.exceptions import HTTPException

from tiddly import jsonio
from tiddly.errors import (
    ApiError,
    BadCursor,
    BadIdempotencyKey,
    BadJson,
    BadQuery,
    BadValue,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    ForeignKeyViolation,
    KeyChanged,
    IdempotencyKeyReused,
    MethodNotAllowed,
    MissingColumn,
    Gone,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ReadOnlyColumn,
    ResultTooLarge,
    StatementTimeout,
    Unauthorized,
    UniqueViolation,
    UnknownColumn,
    UnknownOperator,
    UnknownTable,
    Unsupported,
    UnsupportedMediaType,
)
from tiddly.services import export
from tiddly.web.postgrest import geojson
from tiddly.web.postgrest.grammar import Media, PostgrestError

log = logging.getLogger("tiddly")

JSON_TYPE = "application/json; charset=utf-8"
OBJECT_TYPE = "application/vnd.pgrst.object+json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"
GEOJSON_TYPE = "application/geo+json; charset=utf-8"

# Tiddly's typed errors in PostgREST's words: class -> (status, code), looked up along the class's MRO.
# Codes are PostgreSQL SQLSTATEs where PostgreSQL would have raised the error (23505, 22P02, 42501, ...)
# and PostgREST's own PGRSTxxx where PostgREST would have.
CODES: dict[type, tuple[int, str]] = {
    UnknownTable: (404, "PGRST205"),
    UnknownColumn: (400, "42703"),        # a write's unknown key is PGRST204, see _tiddly_error
    UnknownOperator: (400, "PGRST100"),
    ResultTooLarge: (400, "PGRST100"),
    Unsupported: (400, "PGRST127"),       # what the database cannot do: Feature not implemented
    BadQuery: (400, "PGRST100"),
    BadCursor: (400, "PGRST100"),
    BadJson: (400, "PGRST102"),
    BadValue: (400, "22P02"),             # invalid_text_representation
    MissingColumn: (400, "23502"),        # not_null_violation
    ReadOnlyColumn: (403, "42501"),       # insufficient_privilege: as a column without a GRANT
    BadIdempotencyKey: (400, "PGRST100"),
    Unauthorized: (401, "PGRST301"),      # a key that is no key; no key at all is PGRST302
    Forbidden: (403, "42501"),
    NotFound: (404, "PGRST125"),
    MethodNotAllowed: (405, "PGRST117"),
    Gone: (410, "PGRST100"),               # the change feed's; the dialect never raises it
    UniqueViolation: (409, "23505"),
    ForeignKeyViolation: (409, "23503"),
    IdempotencyKeyReused: (409, "PGRST100"),
    Conflict: (400, "23514"),             # check_violation; a NOT NULL one is 23502
    PayloadTooLarge: (413, "PGRST102"),
    PreconditionFailed: (412, "PGRST100"),  # PostgREST has no If-Match; the dialect never raises it
    UnsupportedMediaType: (415, "PGRST102"),
    DatabaseUnavailable: (503, "PGRST001"),
    KeyChanged: (503, "PGRST001"),
    StatementTimeout: (504, "57014"),     # query_canceled
    ApiError: (500, "PGRSTX00"),
}
_HTTP_CODES = {400: "PGRST100", 404: "PGRST125", 405: "PGRST117", 413: "PGRST102", 415: "PGRST102"}


def error(exc: Exception) -> Response:
    """Any exception as PostgREST's error body; an unexpected one is logged and never shown."""
    if isinstance(exc, ApiError):
        exc = _tiddly_error(exc)
    elif isinstance(exc, HTTPException):
        exc = PostgrestError(exc.code or 500, _HTTP_CODES.get(exc.code or 500, "PGRST100"),
                             exc.description or exc.name)
    elif not isinstance(exc, PostgrestError):
        log.exception("unexpected error on %s %s", request.method, request.path)
        exc = PostgrestError(500, "PGRSTX00", "an internal error occurred; it has been logged")
    body = {"code": exc.code, "message": exc.message, "details": exc.details, "hint": exc.hint}
    headers = {"Proxy-Status": f"PostgREST; error={exc.code}", **exc.headers}
    return Response(jsonio.dumps(body), exc.status, content_type=JSON_TYPE, headers=headers)


def _tiddly_error(exc: ApiError) -> PostgrestError:
    status, code = next(CODES[cls] for cls in type(exc).__mro__ if cls in CODES)
    message, details, headers = exc.message, None, {}
    column = exc.details.get("column")
    if isinstance(exc, UnknownTable):
        message = f"Could not find the table 'public.{exc.details.get('table', '')}' in the schema cache"
        details = exc.message
    elif isinstance(exc, UnknownColumn) and request.method not in ("GET", "HEAD") and column:
        status, code = 400, "PGRST204"
        message = f"Could not find the '{column}' column of '{exc.details.get('table', '')}' in the schema cache"
        details = exc.message
    elif isinstance(exc, Conflict) and exc.details.get("constraint") == "not_null" or \
            isinstance(exc, BadValue) and exc.message.endswith("cannot be null"):
        code = "23502"  # not_null_violation: caught by the database, or by the column's check first
    elif isinstance(exc, UniqueViolation) and exc.clash:
        message, details = _unique_violation(exc.clash)
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
        if not (request.headers.get("Authorization") or request.headers.get("apikey")):
            code = "PGRST302"
        elif "expired" in exc.message:
            code = "PGRST303"
    return PostgrestError(status, code, message, details, None, {**exc.headers, **headers})


def _unique_violation(clash: dict) -> tuple[str, str | None]:
    """PostgreSQL's words for a unique violation, on every database: the constraint's name (its
    default name, ``<table>_pkey`` or ``<table>_<columns>_key``, where the database gives none)
    and ``Key (columns)=(values) already exists.``, told only when the caller may read every
    column of the key."""
    spec = _requested_table(clash.get("table"))
    columns = clash.get("columns") or _key_columns(spec, clash.get("constraint"))
    constraint = clash.get("constraint")
    # MariaDB names a key it was given no name for after its first column: that is no name
    unnamed = constraint is None or constraint == "PRIMARY" or (columns and [constraint] == columns[:1])
    if spec is not None and columns and unnamed:
        key = [c.name for c in spec.primary_key]
        constraint = f"{spec.name}_pkey" if columns == key else f"{spec.name}_{'_'.join(columns)}_key"
    message = f'duplicate key value violates unique constraint "{constraint or "unknown"}"'
    readable = spec is not None and columns and all(
        name in spec.columns and spec.columns[name].readable for name in columns)
    if not readable or clash.get("values") is None:
        return message, None
    return message, f"Key ({', '.join(columns)})=({clash['values']}) already exists."


def _requested_table(name: str | None):
    """The table the request names (or the database named), as the caller sees it; None when unknown."""
    gateway, principal = current_app.extensions.get("tiddly"), getattr(g, "principal", None)
    if gateway is None or principal is None:
        return None
    view = gateway.view(principal)
    name = name or (request.view_args or {}).get("table")
    return view.tables.get(name) if name else None


def _key_columns(spec, constraint: str | None) -> list[str] | None:
    """The columns of the unique key MariaDB names (``PRIMARY``, or the key's own name)."""
    if spec is None or constraint is None:
        return None
    if constraint == "PRIMARY":
        return [c.name for c in spec.primary_key]
    unique = [list(item.columns) for item in list(spec.table.constraints) + list(spec.table.indexes)
              if isinstance(item, UniqueConstraint) or isinstance(item, Index) and item.unique]
    named = [item for item in list(spec.table.constraints) + list(spec.table.indexes)
             if getattr(item, "name", None) == constraint]
    # a key it was given no name for, MariaDB names after its first column
    keys = [list(item.columns) for item in named] + [columns for columns in unique if columns[0].name == constraint]
    return [c.name for c in keys[0]] if keys else None


# -- rows ---------------------------------------------------------------------------------

def rows(data: list[dict], media: Media, status: int, headers: dict[str, str]) -> Response:
    """The rows as the client asked: a JSON array, one JSON object, or CSV."""
    if media.kind == "object":
        if len(data) != 1:
            raise singular_error(len(data))
        response = Response(jsonio.dumps(_stripped(data[0], media)), status, content_type=OBJECT_TYPE)
    elif media.kind == "csv":
        response = Response(csv(data), status, content_type=CSV_TYPE)
    elif media.kind == "geojson":
        collection = geojson.feature_collection(data)
        if collection is None:
            raise PostgrestError(406, "PGRST107", "None of these media types are available: application/geo+json",
                                 "no column of the answer holds geometries (WKT, EWKT or WKB)")
        response = Response(jsonio.dumps(collection), status, content_type=GEOJSON_TYPE)
    else:
        response = Response(jsonio.dumps(_stripped(data, media) if media.strip_nulls else data), status,
                            content_type=JSON_TYPE)
    for name, value in headers.items():  # one by one: cheaper than Response(headers=...) on every GET
        response.headers[name] = value
    return response


def plan(explained: Any, media: Media) -> Response:
    """A query plan, as PostgREST answers one: JSON, or PostgreSQL's text."""
    content_type = f'application/vnd.pgrst.plan+{media.plan_format}; for="{media.plan_for}"; charset=utf-8'
    body = jsonio.dumps(explained) if media.plan_format == "json" else explained
    return Response(body, 200, content_type=content_type)


def singular_error(count: int) -> PostgrestError:
    return PostgrestError(406, "PGRST116", "Cannot coerce the result to a single JSON object",
                          f"The result contains {count} rows")


def csv(data: list[dict]) -> Iterator[bytes]:
    """PostgREST's CSV, streamed: a header of the column names as they are, then one line a row,
    each field as PostgreSQL writes a record's (PostgREST's rows are records' text): quoted
    when empty or holding a quote, a backslash, a parenthesis, a comma or a blank, a quote and a
    backslash doubled, null an empty field; no newline after the last line, nothing for no rows."""
    if not data:
        return
    names = list(data[0])
    yield ",".join(names).encode("utf-8")
    for start in range(0, len(data), export.STREAM_ROWS):
        yield "".join("\n" + ",".join(_record_field(row[name]) for name in names)
                      for row in data[start:start + export.STREAM_ROWS]).encode("utf-8")


_RECORD_QUOTED = re.compile(r'["\\(),\s]')


def _record_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "t" if value else "f"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)  # jsonb's own spacing: ", " and ": "
    else:
        text = str(export.csv_value(value))
    if text and not _RECORD_QUOTED.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def _stripped(value: Any, media: Media) -> Any:
    if not media.strip_nulls:
        return value
    if isinstance(value, dict):
        return {k: _stripped(v, media) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_stripped(v, media) for v in value]
    return value


def content_range(offset: int, count: int, total: int | None) -> str:
    """``0-9/42``; ``*/42`` for no rows; ``*`` for a total nobody asked for."""
    shown = "*" if total is None else str(total)
    return f"{offset}-{offset + count - 1}/{shown}" if count else f"*/{shown}"
