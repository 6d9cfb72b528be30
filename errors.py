"""Typed errors shared by every layer, each with one HTTP status and one stable code.

Services raise these; the HTTP edge turns any of them into the error envelope
``{"status": "error", "error": <message>, "code": <code>, "details": {...}}``.
The table ``ERROR_CODES`` below is the documented, stable list of codes.
"""
from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the response must carry (``Allow``, ``WWW-Authenticate``)."""
        return {}


class BadJson(ApiError):
    status, code = 400, "bad_json"


class BadQuery(ApiError):
    status, code = 400, "bad_query"


class UnknownColumn(ApiError):
    status, code = 400, "unknown_column"


class UnknownOperator(ApiError):
    status, code = 400, "unknown_operator"


class BadValue(ApiError):
    status, code = 400, "bad_value"


class BadCursor(ApiError):
    status, code = 400, "bad_cursor"


class ReadOnlyColumn(ApiError):
    status, code = 400, "read_only_column"


class MissingColumn(ApiError):
    status, code = 400, "missing_column"


class BadIdempotencyKey(ApiError):
    status, code = 400, "bad_idempotency_key"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="tiddly"'}


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class UnknownTable(ApiError):
    status, code = 404, "unknown_table"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, allow: list[str]):
        super().__init__(message, allow=allow)
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class Conflict(ApiError):
    status, code = 409, "conflict"


class UniqueViolation(Conflict):
    code = "unique_violation"


class ForeignKeyViolation(Conflict):
    code = "foreign_key_violation"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class DatabaseUnavailable(ApiError):
    status, code = 503, "database_unavailable"


class StatementTimeout(ApiError):
    status, code = 504, "statement_timeout"


def _all_error_classes(cls=ApiError):
    yield cls
    for sub in cls.__subclasses__():
        yield from _all_error_classes(sub)


# code -> (status, one line of documentation)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "bad_json": (400, "The body (or a query-string parameter) is not valid JSON of the expected shape."),
    "bad_query": (400, "The query is malformed: bad limit/offset, orderby, select, nesting, or an empty delete filter."),
    "unknown_column": (400, "A name in the body or query is not a readable/writable column of the table."),
    "unknown_operator": (400, "A where operator is not one of the documented operators."),
    "bad_value": (400, "A value does not fit its column's type (or its operator)."),
    "bad_cursor": (400, "The 'after' cursor is damaged, forged, or from another table, where or orderby."),
    "read_only_column": (400, "The body writes a column that cannot be written (e.g. an auto-generated id)."),
    "missing_column": (400, "A required column (NOT NULL, no default) is missing from an insert."),
    "bad_idempotency_key": (400, "The Idempotency-Key header is empty, longer than 255 characters or not printable ASCII."),
    "unauthorized": (401, "No API key or login token was sent, or it is unknown, revoked or expired (see WWW-Authenticate)."),
    "forbidden": (403, "The key's scope or table list does not allow this request, or the CORS origin is not allowed."),
    "not_found": (404, "No row has that primary key, or no such route."),
    "unknown_table": (404, "No table of that name is exposed."),
    "method_not_allowed": (405, "The verb is not allowed on this path; the Allow header lists those that are."),
    "conflict": (409, "The change violates a database constraint."),
    "unique_violation": (409, "The change would duplicate a unique value."),
    "foreign_key_violation": (409, "The change references a missing row, or a row still referenced elsewhere."),
    "idempotency_key_reused": (409, "The Idempotency-Key was already used for a different method, path or body."),
    "payload_too_large": (413, "The request body exceeds the configured size limit."),
    "unsupported_media_type": (415, "The request has a body that is not JSON (Content-Type: application/json)."),
    "database_unavailable": (503, "The database cannot be reached right now."),
    "statement_timeout": (504, "The statement ran longer than the configured statement timeout and was cancelled."),
    "internal_error": (500, "A bug in Tiddly; the message never carries SQL, driver text or a traceback."),
}

assert {c.code for c in _all_error_classes()} <= set(ERROR_CODES), "every error class needs a documented code"
