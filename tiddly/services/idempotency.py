"""Idempotency keys: a retried write returns its first response instead of applying twice.

A write carrying an ``Idempotency-Key`` first claims the key by inserting its
row, in the same transaction as the write itself, then stores the response
there before the commit. So the key and the write commit together or not at
all: a failed request (any 4xx or 5xx rolls back) leaves no key behind, and a
retry after a lost response either finds the stored response or applies the
write for the first time. A second request with the same key waits on the
first one's row lock (SQLite: on its write lock), then finds the stored
response. Keys are rows in the database, so this holds across processes.

Functions take a Session and never commit. The request fingerprint (method,
path and query, canonical JSON body) tells a true retry from a reuse of the key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tiddly import jsonio
from tiddly.errors import BadIdempotencyKey, BadJson, IdempotencyKeyReused
from tiddly.models import IdempotencyKey

MAX_KEY_LENGTH = 255
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes


def check_key(raw: str) -> str:
    """The key as sent, or a 400: 1 to 255 printable ASCII characters."""
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise BadIdempotencyKey(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                                header="Idempotency-Key")
    return key


def fingerprint(method: str, target: str, body: bytes) -> str:
    """sha256 of the request: method, path with query string, and body.

    A JSON body counts by value: key order and spacing do not matter.
    """
    digest = hashlib.sha256(f"{method.upper()} {target}\n".encode())
    digest.update(_canonical(body))
    return digest.hexdigest()


def _canonical(body: bytes) -> bytes:
    if not body.strip():
        return b""
    try:
        return orjson.dumps(jsonio.parse_body(body), option=orjson.OPT_SORT_KEYS)
    except (BadJson, TypeError):  # not JSON: the request will fail anyway; the raw bytes will do
        return body


def refuse_reuse(session: Session, key: str, request_fingerprint: str, now: dt.datetime | None = None) -> None:
    """A 409 when ``key`` already belongs to a different request: read before the request's body
    is checked, so a reused key is answered as such whatever the body (``claim`` decides, in the
    write's own transaction, for requests that race)."""
    row = session.execute(select(IdempotencyKey.fingerprint, IdempotencyKey.expires_at)
                          .where(IdempotencyKey.key == key)).first()
    if row is not None and row.expires_at > (now or utcnow()) and row.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was already used for a different request",
                                   header="Idempotency-Key")


def claim(session: Session, key: str, request_fingerprint: str, ttl_seconds: int,
          now: dt.datetime | None = None) -> StoredResponse | None:
    """Take the key for this request (None: go ahead and write) or return the stored response.

    Raises ``IdempotencyKeyReused`` when the key was used for a different request.
    """
    now = now or utcnow()
    expires_at = now + dt.timedelta(seconds=ttl_seconds)
    for _ in range(_CLAIM_ATTEMPTS):
        if _insert_key(session, key, request_fingerprint, now, expires_at):
            return None
        # A shared lock: several waiting retries may read the row at once without deadlocking.
        row = session.execute(
            select(IdempotencyKey.fingerprint, IdempotencyKey.status, IdempotencyKey.response,
                   IdempotencyKey.expires_at)
            .where(IdempotencyKey.key == key).with_for_update(read=True)
        ).first()
        if row is None:  # purged since the insert failed: try again
            continue
        if row.expires_at <= now:
            if _reclaim_expired(session, key, request_fingerprint, now, expires_at):
                return None
            continue
        if row.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was already used for a different request",
                                       header="Idempotency-Key")
        return StoredResponse(row.status, row.response.encode())
    raise AssertionError(f"could not claim idempotency key after {_CLAIM_ATTEMPTS} attempts")


def record(session: Session, key: str, status: int, body: bytes) -> None:
    """Store the response of the request that claimed ``key``; an error response frees the key."""
    if status >= 400:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.key == key))
        return
    session.execute(update(IdempotencyKey).where(IdempotencyKey.key == key)
                    .values(status=status, response=body.decode()))


def expired_keys(session: Session, limit: int = 1000, now: dt.datetime | None = None) -> list[str]:
    stmt = (select(IdempotencyKey.key).where(IdempotencyKey.expires_at <= (now or utcnow()))
            .order_by(IdempotencyKey.expires_at).limit(limit))
    return list(session.execute(stmt).scalars())


def delete_expired(session: Session, keys: list[str], now: dt.datetime | None = None) -> int:
    """Delete these keys if still expired (by primary key: no range locks held against new keys)."""
    if not keys:
        return 0
    result = session.execute(delete(IdempotencyKey).where(
        IdempotencyKey.key.in_(keys), IdempotencyKey.expires_at <= (now or utcnow())))
    return result.rowcount


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _insert_key(session: Session, key: str, request_fingerprint: str, now, expires_at) -> bool:
    try:
        with session.begin_nested():
            session.execute(insert(IdempotencyKey).values(
                key=key, fingerprint=request_fingerprint, created_at=now, expires_at=expires_at))
        return True
    except IntegrityError:
        return False


def _reclaim_expired(session: Session, key: str, request_fingerprint: str, now, expires_at) -> bool:
    result = session.execute(
        update(IdempotencyKey).where(IdempotencyKey.key == key, IdempotencyKey.expires_at <= now)
        .values(fingerprint=request_fingerprint, status=None, response=None, created_at=now,
                expires_at=expires_at))
    return result.rowcount == 1
