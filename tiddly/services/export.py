"""Whole tables in and out: streaming export and bulk import as CSV or NDJSON.

Export: ``Accept: text/csv`` or ``application/x-ndjson`` on a list request
streams every matching row (filtered, ordered, no page cap), read in batches through
a server-side cursor (``reads.stream``) and written here (``render``), so memory stays
flat whatever the row count. Import: ``POST`` with one of those content types reads
the body line by line (``parsed_rows``) and inserts in batches (``insert_parsed``), all in
the request's one transaction; an error names the line. CSV: the first line names the columns;
an empty field is NULL (for a NOT NULL text column, the empty string).
Nothing here imports Flask; ``tiddly import``/``tiddly export`` reuse it.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tiddly import jsonio
from tiddly.errors import ApiError, BadJson, BadValue
from tiddly.registry import TableSpec
from tiddly.services import crud
from tiddly.storage import translate_error

FORMATS = {"text/csv": "csv", "application/x-ndjson": "ndjson"}
MEDIA_TYPES = {fmt: media for media, fmt in FORMATS.items()}
STREAM_ROWS = 2_000   # rows fetched (and written) per round trip
IMPORT_BATCH = 1_000  # rows per INSERT
_NOT_EXPORTED = ("include", "group", "aggregate", "having", "distinct", "count")


# -- export ----------------------------------------------------------------------

def wanted_format(accept) -> str | None:
    """The export format a (werkzeug) Accept header prefers over JSON, if any."""
    best = accept.best_match(["application/json", *FORMATS])
    return FORMATS.get(best)


def render(names: list[str], batches: Iterable, fmt: str) -> Iterator[bytes]:
    """Batches of rows (tuples in ``names``' order) as CSV (formula-safe: see ``csv_chunks``) or
    NDJSON chunks."""
    if fmt == "csv":
        yield from csv_chunks(names, batches, formula_safe=True)
    else:
        yield from (_ndjson_chunk(names, rows) for rows in batches)


def csv_chunks(names: list[str], batches: Iterable, formula_safe: bool = False) -> Iterator[bytes]:
    """The header line, then each batch of rows, as CSV (every line ends with a newline).
    ``formula_safe``: a text cell a spreadsheet would run as a formula gets a leading ``'``."""
    yield csv_chunk(names, [names], formula_safe)
    for rows in batches:
        yield csv_chunk(names, rows, formula_safe)


def csv_chunk(names: list[str], rows, formula_safe: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    value = _safe_csv_value if formula_safe else csv_value
    writer.writerows([value(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


def _safe_csv_value(value: Any) -> Any:
    """A text cell that begins like a formula, quoted with a leading ``'`` (OWASP's advice), so a
    spreadsheet shows it as text; numbers (a -5 in an integer column) are not text and stay."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return csv_value(value)


def csv_value(value: Any) -> Any:
    """A value as CSV writes it: base64 bytes, ISO 8601 times, JSON text, true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _ndjson_chunk(names: list[str], rows) -> bytes:
    return b"".join(jsonio.dumps(dict(zip(names, row))) + b"\n" for row in rows)


# -- import ----------------------------------------------------------------------

def parsed_rows(spec: TableSpec, lines: Iterable[bytes], fmt: str,
                max_line_bytes: int | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, checked values) for each row of a CSV or NDJSON byte stream, read as it is
    consumed; an error names the line. With ``max_line_bytes``, ``lines`` is a binary stream whose
    lines are read at most that long: a longer one is refused as soon as that many bytes of it
    arrived, not once it ends."""
    if max_line_bytes is not None:
        lines = bounded_lines(lines, max_line_bytes)
    parsed = csv_rows(spec, lines) if fmt == "csv" else _ndjson_rows(lines)
    for line, obj in parsed:
        try:
            yield line, spec.values_for_write(obj, insert=True)
        except ApiError as exc:
            raise _at_line(line, exc) from None


def insert_parsed(session: Session, spec: TableSpec, rows: Iterable[tuple[int, dict]],
                  max_key_gap: int | None = None) -> list[tuple]:
    """Insert every parsed row, ``IMPORT_BATCH`` per statement; their primary keys. A batch's
    generated keys chosen by the file lie at most ``max_key_gap`` above the table's highest."""
    keys, batch = [], []
    for item in rows:
        batch.append(item)
        if len(batch) >= IMPORT_BATCH:
            keys += _insert_checked(session, spec, batch, max_key_gap)
            batch = []
    return keys + (_insert_checked(session, spec, batch, max_key_gap) if batch else [])


def _insert_checked(session: Session, spec: TableSpec, batch: list[tuple[int, dict]], max_key_gap: int | None):
    if max_key_gap is not None:
        crud.check_chosen_keys(session, spec, [values for _, values in batch], max_key_gap)
    return _insert_batch(session, spec, batch)


def bounded_lines(stream, limit: int) -> Iterator[bytes]:
    """The lines of a binary stream; a 400 at the first longer than ``limit`` bytes (its newline
    aside), read no further than that."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            raise BadValue(f"line {number}: longer than {limit} bytes, the most one row of an import may take "
                           "(max_body_bytes)", line=number)
        yield line


def _insert_batch(session: Session, spec: TableSpec, batch: list[tuple[int, dict]]) -> list[tuple]:
    groups: dict[tuple, list[dict]] = {}
    for _line, values in batch:
        groups.setdefault(tuple(sorted(values)), []).append(values)
    try:
        with session.begin_nested():
            return [key for rows in groups.values() for key in crud.insert_batch(session, spec, rows)]
    except IntegrityError:
        pass
    for line, values in batch:  # find the row that broke a constraint (the request then rolls back)
        try:
            with session.begin_nested():
                session.execute(insert(spec.table).values(values))
        except IntegrityError as exc:
            raise _at_line(line, translate_error(exc)) from exc
    raise AssertionError("a batch failed but no single row did")


def _decoded(lines: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(lines, start=1):
        try:
            yield number, raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise BadValue(f"line {number}: not UTF-8 text", line=number) from None


def _ndjson_rows(lines: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    for number, text in _decoded(lines):
        if not text.strip():
            continue
        try:
            obj = jsonio.parse_body(text.encode("utf-8"))
        except BadJson as exc:
            raise _at_line(number, exc) from None
        if not isinstance(obj, dict):
            raise BadValue(f"line {number}: each line must be one JSON object", line=number)
        yield number, obj


def csv_rows(spec: TableSpec, lines: Iterable[bytes], null: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, row object) for each row of CSV ``lines`` after the header, whose names it
    checks; a field that reads ``null`` is NULL (by default the empty one: see ``_from_text``)."""
    reader = csv.reader(text for _number, text in _decoded(lines))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise BadValue(f"line 1: {exc}", line=1) from None
    if header:  # a file saved "as UTF-8" by a spreadsheet starts with a byte order mark
        header[0] = header[0].removeprefix("\ufeff")
    columns = []
    for name in header:
        try:
            columns.append(spec.column(name.strip(), purpose="write"))
        except ApiError as exc:
            raise _at_line(1, exc) from None
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadValue(f"line {reader.line_num}: {exc}", line=reader.line_num) from None
        if not record:
            continue
        if len(record) != len(columns):
            raise BadValue(f"line {reader.line_num}: {len(record)} fields, the header names {len(columns)}",
                           line=reader.line_num)
        yield reader.line_num, {col.name: _from_text(col, text, null) for col, text in zip(columns, record)}


def _from_text(col, text: str, null: str) -> Any:
    """A CSV field as its column's value. The ``null`` text is NULL, except that an empty
    field is the empty string for a NOT NULL text column."""
    if text == null:
        return "" if text == "" and col.kind == "string" and not col.nullable else None
    return col.parse_text(text)


def _at_line(line: int, exc: Exception) -> Exception:
    if isinstance(exc, ApiError):
        exc.message = f"line {line}: {exc.message}"
        exc.details["line"] = line
    return exc
