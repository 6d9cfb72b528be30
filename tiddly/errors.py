"""Typed errors shared by every layer, each with one HTTP status and one stable code.

Services raise these; the HTTP edge turns any of them into the error envelope
``{"status": "error", "error": <message>, "code": <code>, "details": {...}}``.
``ERROR_CODES``, built from the classes, is the documented, stable list of codes.
"""
from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "internal_error"
    doc = "A bug in Tiddly; the message never carries SQL, driver text or a traceback."

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
    doc = "The body (or a query-string parameter) is not valid JSON of the expected shape."


class BadQuery(ApiError):
    status, code = 400, "bad_query"
    doc = "The query is malformed: bad limit/offset, orderby, select, nesting, or an empty delete filter."


class ResultTooLarge(BadQuery):
    code = "result_too_large"
    doc = "The answer would embed more related rows than allowed (max_embedded_rows): filter or limit its embeds."


class Unsupported(BadQuery):
    code = "unsupported"
    doc = ("The database cannot do what the query asks: an operator of PostgreSQL's range or text search "
           "types on SQLite or MariaDB.")


class UnknownColumn(ApiError):
    status, code = 400, "unknown_column"
    doc = "A name in the body or query is not a readable/writable column of the table."


class UnknownOperator(ApiError):
    status, code = 400, "unknown_operator"
    doc = "A where operator is not one of the documented operators."


class BadValue(ApiError):
    status, code = 400, "bad_value"
    doc = "A value does not fit its column's type (or its operator)."


class BadCursor(ApiError):
    status, code = 400, "bad_cursor"
    doc = "The 'after' cursor is damaged, forged, or from another table, where or orderby."


class ReadOnlyColumn(ApiError):
    status, code = 400, "read_only_column"
    doc = "The body writes a column that cannot be written (e.g. an auto-generated id)."


class MissingColumn(ApiError):
    status, code = 400, "missing_column"
    doc = "A required column (NOT NULL, no default) is missing from an insert."


class BadIdempotencyKey(ApiError):
    status, code = 400, "bad_idempotency_key"
    doc = "The Idempotency-Key header is empty, longer than 255 characters or not printable ASCII."


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"
    doc = "No API key or login token was sent, or it is unknown, revoked or expired (see WWW-Authenticate)."

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="tiddly"'}


class Forbidden(ApiError):
    status, code = 403, "forbidden"
    doc = "The key's scope or table list does not allow this request, or the CORS origin is not allowed."


class NotFound(ApiError):
    status, code = 404, "not_found"
    doc = "No row has that primary key, or no such route."


class UnknownTable(ApiError):
    status, code = 404, "unknown_table"
    doc = "No table of that name is exposed."


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"
    doc = "The verb is not allowed on this path; the Allow header lists those that are."

    def __init__(self, message: str, allow: list[str]):
        super().__init__(message, allow=allow)
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class Gone(ApiError):
    status, code = 410, "gone"
    doc = "A change feed position older than the change log keeps (changes_retention_s): read again, listen anew."


class Conflict(ApiError):
    status, code = 409, "conflict"
    doc = "The change violates a database constraint."


class UniqueViolation(Conflict):
    code = "unique_violation"
    doc = "The change would duplicate a unique value."
    # What the database said of the clash (storage.errors.unique_clash): never part of the envelope
    clash: dict = {}


class ForeignKeyViolation(Conflict):
    code = "foreign_key_violation"
    doc = "The change references a missing row, or a row still referenced elsewhere."


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    doc = "The Idempotency-Key was already used for a different method, path or body."


class PreconditionFailed(ApiError):
    status, code = 412, "precondition_failed"
    doc = "If-Match or If-None-Match does not hold for the row as it is now; nothing was written."


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"
    doc = "The request body exceeds the configured size limit."


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"
    doc = "The request has a body that is not JSON (Content-Type: application/json)."


class DatabaseUnavailable(ApiError):
    status, code = 503, "database_unavailable"
    doc = ("The database cannot be reached right now, or cannot store anything: `details.cause` is `disk_full`, "
           "`read_only` or `cannot_open` when that is why, and `primary_down` for a write while the primary "
           "cannot be reached and reads are answered by a read replica (with `Retry-After`).")

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"} if self.details.get("cause") == "primary_down" else {}


class StatementTimeout(ApiError):
    status, code = 504, "statement_timeout"
    doc = "The statement ran longer than the configured statement timeout and was cancelled."


def _all_error_classes(cls=ApiError):
    yield cls
    for sub in cls.__subclasses__():
        yield from _all_error_classes(sub)


# code -> (status, one line of documentation), read by docs/API.md and the OpenAPI document.
ERROR_CODES: dict[str, tuple[int, str]] = {
    cls.code: (cls.status, cls.doc)
    for cls in sorted(_all_error_classes(), key=lambda cls: cls.status)
}
