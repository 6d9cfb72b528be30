"""Keyset pagination: opaque signed cursors, and the predicate that resumes after one. Pure: no Flask.

A cursor is ``base64url(JSON {"v": <the order columns' values in the page's last
row>, "f": <fingerprint of table, where and orderby>}) + "." + base64url(HMAC)``.
The HMAC makes a tampered cursor a 400; the fingerprint makes a cursor from
another table, filter or ordering a 400. The key is the configured
``TIDDLY_SECRET`` or, when none is set, a random key stored once in the
database (``load_key``): every worker and every restart then signs alike with
no setup, and deleting that row rotates it.

NULL placement: a term with ``nulls first|last`` sorts as it says (query.py
emulates it everywhere). Without one, each database keeps its own default
(PostgreSQL sorts NULL above every value, SQLite and MariaDB below), and the
keyset predicate follows the database it runs on, so paging agrees with the
plain ORDER BY on each.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, false, insert, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from tiddly.config import Config
from tiddly.errors import ApiError, BadCursor, BadQuery, UniqueViolation
from tiddly.models import Secret

_KEY_NAME = "cursor"


def load_key(db, configured: str) -> bytes:
    """The HMAC key: from ``TIDDLY_SECRET`` if set, else the one stored in the database."""
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    stored = _stored_key(db)
    if stored is not None:
        return bytes.fromhex(stored)
    Secret.__table__.create(db.engine, checkfirst=True)
    for _attempt in range(3):
        try:
            with db.session(write=True) as session:
                stored = session.scalar(select(Secret.value).where(Secret.name == _KEY_NAME))
                if stored is None:
                    stored = secrets.token_hex(32)
                    session.execute(insert(Secret).values(name=_KEY_NAME, value=stored))
            return bytes.fromhex(stored)
        except UniqueViolation:
            continue  # another worker stored its key first: read that one
    raise RuntimeError("could not load or store the cursor key")


def _stored_key(db) -> str | None:
    """The stored key, read where any read goes (a read replica answers while the primary is down);
    None when there is none yet, or no table for it."""
    try:
        with db.session() as session:
            return session.scalar(select(Secret.value).where(Secret.name == _KEY_NAME))
    except DBAPIError:  # no such table yet
        return None


def fingerprint(table: str, where: Any, order) -> str:
    shape = {"t": table, "w": where, "o": [[t.column.name, t.descending, t.nulls] for t in order]}
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def max_length(config: Config) -> int:
    """The longest cursor issued and accepted: half a request body, so that a FETCH can send it
    back with its query. (It holds the order columns' values, so a long text makes it long.)"""
    return config.max_body_bytes // 2


def encode(key: bytes, values: Sequence[Any], print_: str, config: Config) -> str:
    """The cursor after ``values``, or a 400 when it would be longer than ``decode`` takes."""
    text = json.dumps({"v": [_plain(v) for v in values], "f": print_}, separators=(",", ":"), ensure_ascii=False)
    payload = _b64(text.encode("utf-8", "surrogatepass"))
    token = payload + "." + _b64(_sign(key, payload))
    if len(token) > max_length(config):
        raise BadQuery(f"the page's last row orders by values too long for a cursor ({len(token)} characters, "
                       f"at most {max_length(config)}); order by shorter columns, or page with offset")
    return token


def decode(key: bytes, token: Any, print_: str, order, config: Config) -> list:
    """The typed values stored in ``token``; a 400 if it is malformed, tampered or foreign."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > max_length(config):
        raise BadCursor("'after' is not a cursor from this API's 'next'")
    payload, signature = token.split(".")
    try:
        valid = hmac.compare_digest(_unb64(signature), _sign(key, payload))
        body = json.loads(_unb64(payload).decode("utf-8", "surrogatepass")) if valid else None
    except (ValueError, binascii.Error):
        valid = False
    if not valid or not isinstance(body, dict) or not isinstance(body.get("v"), list):
        raise BadCursor("the cursor in 'after' is damaged or was not issued by this API")
    if body.get("f") != print_ or len(body["v"]) != len(order):
        raise BadCursor("the cursor in 'after' belongs to another table, where or orderby")
    try:
        return [term.column.coerce(value) for term, value in zip(order, body["v"])]
    except ApiError:
        raise BadCursor("the cursor in 'after' does not fit this table's columns") from None


def after_clause(order, values: Sequence[Any], dialect_name: str) -> ColumnElement:
    """Rows strictly after ``values`` in ``order``: (c1 beyond v1) OR (c1 = v1 AND c2 beyond v2) OR ..."""
    chain, equal = [], []
    for term, value in zip(order, values):
        col = term.column.column
        nulls = _nulls_first(term, dialect_name) if term.column.nullable else None
        beyond = _beyond(col, value, term.descending, nulls)
        if beyond is not None:
            chain.append(and_(*equal, beyond))
        equal.append(col.is_(None) if value is None else col == value)
    return or_(*chain) if chain else false()


def _beyond(col, value, descending: bool, nulls_first: bool | None):
    """``nulls_first`` None: the column holds no NULLs."""
    if value is None:
        # After a NULL come the non-NULL values when NULLs sort first, and nothing else when last.
        return col.is_not(None) if nulls_first else None
    strictly = col < value if descending else col > value
    return strictly if nulls_first in (True, None) else or_(strictly, col.is_(None))


def _nulls_first(term, dialect_name: str) -> bool:
    if term.nulls:
        return term.nulls == "first"
    nulls_high = dialect_name == "postgresql"
    return nulls_high == term.descending


def _plain(value: Any) -> Any:
    """A JSON value that ``ColumnSpec.coerce`` turns back into ``value``."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def _sign(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()[:18]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
