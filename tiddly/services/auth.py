"""API keys and login tokens: issue, hash, check, and what each may do. Pure: no Flask.

A key or token is 32 random bytes from ``secrets``; the database keeps only its
SHA-256. A fast hash is enough for a secret with 256 bits of entropy (there is
nothing to brute-force), and it lets a request find its key with one indexed
lookup by hash, on every request, so a revocation holds at once on every worker.
Passwords, which people choose, get scrypt instead (``passwords.py``).

Scopes nest: ``read`` (operations that only read) < ``write`` (operations that also
write) < ``admin`` (everything; reserved for gateway-management routes). A key may be
limited to a list of tables. A login token (``POST /-/login``) acts for its user with
``write`` scope on every exposed table. What a principal may do with an operation is
decided in one place, ``access.decide``, from what the operation reads and writes.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from sqlalchemy import bindparam, delete, exists, insert, select, update
from sqlalchemy.orm import Session

from tiddly.errors import BadValue, KeyChanged, NotFound, Unauthorized
from tiddly.models import ApiKey, LoginToken
from tiddly.passwords import hash_password, verify_password
from tiddly.registry import TableSpec
from tiddly.storage import Database, Writer

SCOPES = ("read", "write", "admin")  # each includes the ones before it
LOGIN_SCOPE = "write"
KEY_PREFIX, TOKEN_PREFIX = "tdk_", "tdl_"  # tells a key from a login token before any lookup
_MAX_SECRET_LENGTH = 200
_NAME_LENGTH = ApiKey.__table__.c.name.type.length


@dataclass(frozen=True)
class Principal:
    """Who is asking, and what they may do."""
    kind: str                              # "key", "login" or "open"
    name: str                              # the key's name, the user's email, or "open mode"
    scope: str
    tables: frozenset[str] | None = None   # None: every exposed table
    # Read-your-writes: the name its writes are recorded under, and where its last write is
    # (``Database.identify``, read in the key check); ``Database.session(writer=...)`` takes it.
    writer: Writer | None = field(default=None, compare=False, repr=False)
    # A key the worker knew, taken before its check came back: the check travels with the
    # request's first statement and ``confirm`` holds the answer until it is back and agrees.
    unconfirmed: "Unconfirmed | None" = field(default=None, compare=False, repr=False)

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def describe(self) -> dict[str, Any]:
        """What GET /-/whoami answers: who this is and what it may do (never the secret)."""
        tables = sorted(self.tables) if self.tables is not None else None
        return {"kind": self.kind, "name": self.name, "scope": self.scope, "tables": tables}


OPEN = Principal("open", "open mode", "admin")
COMMAND_LINE = Principal("command line", "the command line", "admin")  # tiddly import/export: the database's own user


def utcnow() -> dt.datetime:
    """Naive UTC, as the internal tables store it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- keys ----------------------------------------------------------------------

def create_key(session: Session, name: str, scope: str, tables: list[str] | None = None) -> str:
    """Store a new key's hash and return the key itself, which nothing keeps."""
    if not name or len(name) > _NAME_LENGTH or not name.isprintable():
        raise BadValue(f"a key name is 1 to {_NAME_LENGTH} printable characters")
    if scope not in SCOPES:
        raise BadValue(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
    if tables is not None and not tables:
        raise BadValue("a key limited to tables needs at least one table")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    session.execute(insert(ApiKey).values(
        name=name, key_hash=digest(secret), scope=scope, created_at=utcnow(),
        tables=",".join(sorted(set(tables))) if tables is not None else None))
    return secret


def list_keys(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(ApiKey.name, ApiKey.scope, ApiKey.tables, ApiKey.created_at,
                                  ApiKey.revoked_at).order_by(ApiKey.name)).mappings()
    return [dict(row) for row in rows]


def revoke_key(session: Session, name: str) -> None:
    result = session.execute(update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    if result.rowcount == 0:
        raise NotFound(f"no active key is named {name!r}")


def count_active_keys(session: Session) -> int:
    return len(session.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).all())


# Run on every keyless request, built once and sent through the driver (Database.first_row):
# no per-request statement building, cache key, Connection or result object. One row, true or
# false, so that Database.identify can add open mode's last write position to it.
_ANY_ACTIVE_KEY = select(exists().where(ApiKey.__table__.c.revoked_at.is_(None)))
OPEN_WRITER = "open"  # every request in open mode is one writer, for read-your-writes
_NEEDS_A_KEY = "this gateway needs a key: send Authorization: Bearer <key>"


def _any_active_key(db: Database) -> tuple[bool, Writer]:
    row, writer = db.identify(_ANY_ACTIVE_KEY, None, OPEN_WRITER)
    return bool(row[0]), writer


# -- who is asking -------------------------------------------------------------

def authenticate(db: Database, authorization: str | None, open_allowed: bool,
                 users: TableSpec | None = None, known: "KnownKeys | None" = None) -> Principal:
    """The principal behind an ``Authorization`` header, or a 401.

    Without a header the request runs in open mode, but only while no active key
    exists and the gateway may be open (bound to loopback, or ``--insecure``).
    ``users`` is the exposed user table login tokens belong to (None: no logins).
    One lookup in the database on every call: a key revoked a moment ago fails now.
    With ``known`` (PostgreSQL, see ``KnownKeys``) the lookup of a key this worker has seen
    travels with the request's first statement instead, and ``confirm`` waits for it."""
    if not authorization:
        if known is not None and open_allowed and db.defers_reads and known.open_seen:
            return known.still_open(db)
        active, writer = _any_active_key(db)
        if active:
            raise Unauthorized(_NEEDS_A_KEY)
        if not open_allowed:
            raise Unauthorized("no API key exists yet and the gateway is not on loopback; "
                               "create one with `tiddly keys create`")
        if known is not None:
            known.open_seen = True
        return replace(OPEN, writer=writer)
    secret = _bearer(authorization)
    if secret.startswith(TOKEN_PREFIX) and users is not None:
        return _login_principal(db, users, secret)
    if known is not None and db.defers_reads:
        return known.principal(db, secret)
    return _key_principal(db, secret)


def _bearer(authorization: str) -> str:
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > _MAX_SECRET_LENGTH:
        raise Unauthorized("send the key as Authorization: Bearer <key>")
    return secret


# Run on every keyed request, built once and sent through the driver, like _ANY_ACTIVE_KEY.
# Revoked or not is a NULL test, so the row needs no conversion of the revocation's time.
_KEYS = ApiKey.__table__
_KEY_BY_HASH = select(_KEYS.c.name, _KEYS.c.key_hash, _KEYS.c.scope, _KEYS.c.tables,
                      _KEYS.c.revoked_at.is_not(None)).where(_KEYS.c.key_hash == bindparam("wanted"))


def _key_principal(db: Database, secret: str) -> Principal:
    wanted = digest(secret)
    row, writer = db.identify(_KEY_BY_HASH, {"wanted": wanted}, wanted)
    # The lookup compares hashes, so its timing says nothing usable about the key;
    # compare_digest keeps the final check constant-time all the same.
    if row is None or not hmac.compare_digest(row[1], wanted) or row[4]:
        raise Unauthorized("the API key is unknown or revoked")
    name, _, scope, tables, _ = row
    return Principal("key", name, scope, frozenset(tables.split(",")) if tables is not None else None, writer)


class KnownKeys:
    """The keys a worker has checked, by hash, so that the next request with one need not wait
    for its check before it plans: the check is owed (``Database.owed_read``), sent with the
    request's first statement, one round trip for both, and ``confirm`` holds every answer and
    every commit until it is back and agrees. A key first seen is checked at once, as without
    this. Open mode the same: once a keyless request found no active key, the next ones owe
    that check."""

    LIMIT = 10_000  # keys remembered per worker; past it the oldest is forgotten

    def __init__(self):
        self._principals: dict[str, Principal] = {}
        self.open_seen = False

    def principal(self, db: Database, secret: str) -> Principal:
        wanted = digest(secret)
        seen = self._principals.get(wanted)
        if seen is None:
            return self._remember(wanted, _key_principal(db, secret))
        owed = db.owed_read(_KEY_BY_HASH, {"wanted": wanted})
        return replace(seen, unconfirmed=Unconfirmed(owed, lambda row: self._agrees(wanted, seen, row)))

    def still_open(self, db: Database) -> Principal:
        return replace(OPEN, writer=Writer(OPEN_WRITER),
                       unconfirmed=Unconfirmed(db.owed_read(_ANY_ACTIVE_KEY, {}), self._no_key_yet))

    def _remember(self, wanted: str, principal: Principal) -> Principal:
        if len(self._principals) >= self.LIMIT:
            self._principals.pop(next(iter(self._principals)), None)
        self._principals[wanted] = principal
        return principal

    def _agrees(self, wanted: str, seen: Principal, row: tuple | None) -> None:
        if row is None or not hmac.compare_digest(row[1], wanted) or row[4]:
            self._principals.pop(wanted, None)
            raise Unauthorized("the API key is unknown or revoked")
        name, _, scope, tables, _ = row
        if (name, scope, frozenset(tables.split(",")) if tables is not None else None) != \
                (seen.name, seen.scope, seen.tables):
            self._principals.pop(wanted, None)
            raise KeyChanged("the API key's scope or tables changed while this request ran; nothing was "
                             "done: send it again")

    def _no_key_yet(self, row: tuple | None) -> None:
        if row is not None and row[0]:
            self.open_seen = False
            raise Unauthorized(_NEEDS_A_KEY)


@dataclass(eq=False)
class Unconfirmed:
    """A check on its way with the request's first statement (storage's ``OwedRead``), and what
    must hold of its row (``agrees`` raises when it does not)."""
    owed: Any
    agrees: Callable[[tuple | None], None]
    confirmed: bool = False


def confirm(db: Database, principal: Principal) -> None:
    """Before anything is answered or committed for ``principal``: its check agrees with what
    the request was planned with. A key revoked meanwhile (or the first key made while in open
    mode) is a 401, nothing answered, nothing committed; a key whose scope or tables were changed
    in the database a 503 to send again (the request was planned with the old ones)."""
    pending = principal.unconfirmed
    if pending is None or pending.confirmed:
        return
    pending.agrees(db.settle(pending.owed))
    pending.confirmed = True


def _login_principal(db: Database, users: TableSpec, secret: str) -> Principal:
    wanted = digest(secret)
    tokens, user = LoginToken.__table__.c, users.table.c
    # The token's expiry is a datetime: typed, through a result that converts it.
    row, writer = db.identify(select(tokens.token_hash, tokens.expires_at, user.email)
                              .join_from(LoginToken.__table__, users.table, user.id == tokens.user_id)
                              .where(tokens.token_hash == wanted), None, wanted, typed=True)
    if row is None or not hmac.compare_digest(row[0], wanted):
        raise Unauthorized("the login token is unknown")
    if row[1] <= utcnow():
        raise Unauthorized("the login token has expired; log in again")
    return Principal("login", row[2], LOGIN_SCOPE, writer=writer)


# -- login -----------------------------------------------------------------------

@dataclass(frozen=True)
class LoginAttempt:
    """A login's email looked up: the user's id and stored password hash (None: no such user)."""
    user_id: Any
    stored: str | None


def find_login(session: Session, users: TableSpec, email: Any, password: Any) -> LoginAttempt:
    """A login's first step, in a read: check the body and look up the user."""
    if not {"id", "email", "password"} <= set(users.columns):
        raise NotFound(f"table '{users.name}' has no email and password columns to log in with")
    if not isinstance(email, str) or not isinstance(password, str):
        raise BadValue('POST /-/login takes {"email": "...", "password": "..."} (two strings)')
    email = users.columns["email"].coerce(email)
    row = session.execute(select(users.table.c.id, users.table.c.password)
                          .where(users.table.c.email == email)).first()
    if row is None or not row.password:
        return LoginAttempt(None, None)
    return LoginAttempt(row.id, row.password)


def check_login(attempt: LoginAttempt, password: str) -> Any:
    """The second step, in no transaction (scrypt takes ~50 ms of CPU, and SQLite's writers
    would wait on it): the user's id, or a 401. An unknown email costs the same scrypt
    as a wrong password (a dummy hash), so neither the answer nor its time tells them apart."""
    matches = verify_password(password, attempt.stored or _dummy_hash())
    if attempt.stored is None or not matches:
        raise Unauthorized("wrong email or password")
    return attempt.user_id


def issue_token(session: Session, user_id: Any, ttl_s: int) -> dict[str, Any]:
    """The last step, in a write: store a new token's hash and answer the token."""
    now = utcnow()
    session.execute(delete(LoginToken).where(LoginToken.expires_at <= now))  # housekeeping
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(seconds=ttl_s)
    session.execute(insert(LoginToken).values(token_hash=digest(token), user_id=user_id,
                                              created_at=now, expires_at=expires_at))
    return {"token": token, "token_type": "Bearer", "expires_at": expires_at.isoformat() + "Z",
            "expires_in": ttl_s, "scope": LOGIN_SCOPE}


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
