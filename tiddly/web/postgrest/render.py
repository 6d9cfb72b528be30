"""Answers in PostgREST's shape: rows as a JSON array, one object or CSV, and every error as
``{"code", "message", "details", "hint"}`` (all four keys, null when empty) with PostgREST's
code and status. Tiddly's typed errors are mapped to PostgREST's in one table, ``CODES``.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from flask import Response, request
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
    IdempotencyKeyReused,
    MethodNotAllowed,
    MissingColumn,
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
    UnsupportedMediaType,
)
from tiddly.services import export
from tiddly.web.postgrest.grammar import Media, PostgrestError

log = logging.getLogger("tiddly")

JSON_TYPE = "application/json; charset=utf-8"
OBJECT_TYPE = "application/vnd.pgrst.object+json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"

# Tiddly's typed errors in PostgREST's words: class -> (status, code), looked up along the class's MRO.
# Codes are PostgreSQL SQLSTATEs where PostgreSQL would have raised the error (23505, 22P02, 42501, ...)
# and PostgREST's own PGRSTxxx where PostgREST would have.
CODES: dict[type, tuple[int, str]] = {
    UnknownTable: (404, "PGRST205"),
    UnknownColumn: (400, "42703"),        # a write's unknown key is PGRST204, see _tiddly_error
    UnknownOperator: (400, "PGRST100"),
    ResultTooLarge: (400, "PGRST100"),
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
    UniqueViolation: (409, "23505"),
    ForeignKeyViolation: (409, "23503"),
    IdempotencyKeyReused: (409, "PGRST100"),
    Conflict: (400, "23514"),             # check_violation; a NOT NULL one is 23502
    PayloadTooLarge: (413, "PGRST102"),
    PreconditionFailed: (412, "PGRST100"),  # PostgREST has no If-Match; the dialect never raises it
    UnsupportedMediaType: (415, "PGRST102"),
    DatabaseUnavailable: (503, "PGRST001"),
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
    elif isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
        if not (request.headers.get("Authorization") or request.headers.get("apikey")):
            code = "PGRST302"
        elif "expired" in exc.message:
            code = "PGRST303"
    return PostgrestError(status, code, message, details, None, {**exc.headers, **headers})


# -- rows ---------------------------------------------------------------------------------

def rows(data: list[dict], media: Media, status: int, headers: dict[str, str]) -> Response:
    """The rows as the client asked: a JSON array, one JSON object, or CSV."""
    if media.kind == "object":
        if len(data) != 1:
            raise singular_error(len(data))
        response = Response(jsonio.dumps(_stripped(data[0], media)), status, content_type=OBJECT_TYPE)
    elif media.kind == "csv":
        response = Response(csv(data), status, content_type=CSV_TYPE)
    else:
        response = Response(jsonio.dumps(_stripped(data, media) if media.strip_nulls else data), status,
                            content_type=JSON_TYPE)
    for name, value in headers.items():  # one by one: cheaper than Response(headers=...) on every GET
        response.headers[name] = value
    return response


def singular_error(count: int) -> PostgrestError:
    return PostgrestError(406, "PGRST116", "Cannot coerce the result to a single JSON object",
                          f"The result contains {count} rows")


def csv(data: list[dict]) -> Iterator[bytes]:
    """PostgREST's CSV, streamed: the header and the rows joined by newlines, with none after the
    last line (nothing at all for no rows)."""
    if not data:
        return
    names = list(data[0])
    batches = ([[row[n] for n in names] for row in data[start:start + export.STREAM_ROWS]]
               for start in range(0, len(data), export.STREAM_ROWS))
    newline = b""
    for chunk in export.csv_chunks(names, batches):  # each ends with a newline: hold it back
        yield newline + chunk[:-1]
        newline = b"\n"


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
