"""``GET /-/changes``: the change feed as Server-Sent Events (DESIGN section 11, docs/changes.md),
and ``listen``, the same feed for other protocols on this worker's event loop (Realtime).

A native handler (``web/native.py``): a stream holds no request slot and no thread. Every
listener of one event loop is served by one ``_Hub``, attached to the process's poller
(``services/changes.Feed``): a batch of changes reaches the loop in one
``call_soon_threadsafe``, and the hub hands each listener what it may see (its tables, its
where, its columns), in memory. The database is asked only at the start (the key, a resume's
backlog) and by the poller.
"""
from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import parse_qs

from tiddly import jsonio
from tiddly.errors import ApiError, BadQuery
from tiddly.services import access, auth
from tiddly.services.auth import Principal
from tiddly.services.changes import OPEN_MODE, Feed, Logged, check_condition, condition_columns, matches
from tiddly.services.plan import Read
from tiddly.web import guard, native
from tiddly.web.api import language

PATH = "/-/changes"
MAX_PENDING = 10_000  # changes waiting for one slow listener; past it, its stream ends (it resumes)
_END, _TICK = object(), object()


@dataclass(frozen=True)
class Event:
    position: str      # opaque, usable as Last-Event-ID
    table: str
    op: str            # "insert" | "update" | "delete"
    key: dict          # primary key columns -> values
    row: dict          # the listener's visible columns after the change; for a delete, the key alone
    at: str            # commit time, ISO 8601 UTC, e.g. "2026-12-07T22:31:05.123Z"

    def data(self) -> dict:
        return {"table": self.table, "op": self.op, "key": self.key, "row": self.row, "at": self.at}


def install(app, feed: Feed) -> None:
    app.extensions["tiddly.feed"] = feed
    app.extensions["tiddly.feed.hubs"] = {}
    native.register(app, PATH, lambda scope, receive, send, call: _serve(app, scope, receive, send, call))


# -- who is asking --------------------------------------------------------------------------

async def authenticate(app, call, credentials: Any) -> Principal:
    """The principal behind a native request: ``credentials`` is the ASGI scope's header list,
    an ``Authorization`` value (``"Bearer tdk_..."``), a bare key or token, or None (open mode).
    The same check as every request's (``auth.authenticate``), run through ``call``."""
    gateway = app.extensions["tiddly"]
    if isinstance(credentials, (list, tuple, dict)):
        credentials = _header(credentials, "authorization")
    elif isinstance(credentials, str) and credentials and " " not in credentials.strip():
        credentials = f"Bearer {credentials.strip()}"
    return await call(auth.authenticate, gateway.db, credentials, gateway.config.open_mode_allowed,
                      guard.login_users(gateway))


def _header(headers, name: str) -> str | None:
    """A header's value from ASGI's (bytes, bytes) pairs, or str pairs, or a mapping; any case."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        key = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key.lower() == name:
            return (value.decode("latin-1") if isinstance(value, bytes) else str(value)) or None
    return None


# -- listening ------------------------------------------------------------------------------

@dataclass
class _Table:
    columns: tuple[str, ...]
    where: Any
    where_keys_only: bool = True


class Listener:
    """One stream's subscription: what it may see, where it is, what waits for it."""

    def __init__(self, principal: Principal, tables: dict[str, _Table], last: int):
        self.principal, self.tables, self.last = principal, tables, last
        self.pending: collections.deque = collections.deque()
        self.ready = asyncio.Event()
        self.catching_up = False
        self.idle = True

    def push(self, item) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.pending.clear()
            item = _END
        self.pending.append(item)
        self.ready.set()

    def end(self) -> None:
        self.push(_END)

    def accept(self, change: Logged, cache: dict) -> Event | None:
        seen = self.tables.get(change.table)
        if seen is None or change.position <= self.last:
            return None
        # A delete carries its key alone: a where it cannot test lets it through.
        if not matches(seen.where, change.row) and (change.op != "delete" or seen.where_keys_only):
            return None
        made = cache.get((change.position, seen.columns))
        if made is None:
            row = {name: change.row[name] for name in seen.columns if name in change.row}
            made = cache[(change.position, seen.columns)] = Event(
                str(change.position), change.table, change.op, change.key, row, change.at)
        return made

    async def next(self):
        """A list of events, a keep-alive tick, or ``_END``."""
        while not self.pending:
            self.ready.clear()
            await self.ready.wait()
        item = self.pending.popleft()
        if isinstance(item, list):
            item = [e for e in item if int(e.position) > self.last]
            if item:
                self.last = int(item[-1].position)
        return item


class _Hub:
    """Every listener of one event loop; the poller's one way into that loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.listeners: set[Listener] = set()

    def deliver(self, batch: list[Logged], revoked: frozenset[str], tick: bool) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._dispatch, batch, revoked, tick)
            return True
        except RuntimeError:  # the loop is closed
            return False

    def key_names(self) -> set[str]:
        return {_revocable(l.principal) for l in list(self.listeners) if l.principal.kind in ("key", "open")}

    def _dispatch(self, batch: list[Logged], revoked: frozenset[str], tick: bool) -> None:
        cache: dict = {}
        for listener in list(self.listeners):
            if listener.principal.kind in ("key", "open") and _revocable(listener.principal) in revoked:
                listener.end()
                continue
            if not listener.catching_up:
                events = [e for e in (listener.accept(c, cache) for c in batch) if e is not None]
                if events:
                    listener.push(events)
                    listener.idle = False
            else:
                listener.push([c for c in batch if c.table in listener.tables])  # raw: filtered when caught up
            if tick:
                if listener.idle:
                    listener.push(_TICK)
                listener.idle = True


def _hub(app) -> _Hub:
    loop = asyncio.get_running_loop()
    hubs = app.extensions["tiddly.feed.hubs"]
    hub = hubs.get(loop)
    if hub is None:
        hub = hubs[loop] = _Hub(loop)
        app.extensions["tiddly.feed"].attach(hub)
    return hub


async def open_listener(app, call, principal: Principal, tables: list[str], where: dict | None = None,
                        after: str | None = None) -> "Subscription":
    """``listen``'s checks, made now: the subscription, already receiving changes. Raises the usual
    errors (unknown or invisible table, no read scope, bad where, a bad or pruned position)."""
    gateway, feed = app.extensions["tiddly"], app.extensions["tiddly.feed"]
    if not tables:
        raise BadQuery("name the tables to listen to: ?tables=a,b")
    view = gateway.view(principal)
    seen = {}
    for name in dict.fromkeys(tables):
        spec = access.table(view, principal, name)
        access.decide(Read(spec, spec.readable), principal)
        condition = language.where(spec, where, gateway.config) if where is not None else None
        check_condition(condition)
        keys = {c.name for c in spec.primary_key}
        seen[name] = _Table(tuple(c.name for c in spec.readable), condition, condition_columns(condition) <= keys)
    position = _position(after)
    if position is not None:
        await call(feed.check_resume, position)
    frontier = await call(feed.start)
    listener = Listener(principal, seen, frontier if position is None else position)
    listener.catching_up = position is not None
    hub = _hub(app)
    hub.listeners.add(listener)
    return Subscription(app, call, hub, listener)


def _position(after: str | None) -> int | None:
    if after is None or after == "":
        return None
    if not after.isdigit() or len(after) > 19:
        raise BadQuery(f"not a change feed position: {after[:40]!r} (give an event's id)")
    return int(after)


class Subscription:
    """Events (lists), keep-alive ticks and the end, in position order, for one listener."""

    def __init__(self, app, call, hub: _Hub, listener: Listener):
        self.app, self.call, self.hub, self.listener = app, call, hub, listener

    async def next(self):
        """A list of ``Event``, ``"tick"``, or None at the end (revoked, too slow, closed)."""
        listener = self.listener
        if listener.catching_up:
            events = await self._catch_up()
            if events is not None:
                return events
        item = await listener.next()
        if item is _END:
            return None
        if item is _TICK:
            return "tick"
        return item

    async def _catch_up(self):
        """The next page of the backlog, or None once caught up (then the changes queued live
        meanwhile are filtered and follow)."""
        listener, cache = self.listener, {}
        backlog = self.app.extensions["tiddly.feed"].backlog
        while True:
            page = await self.call(backlog, listener.last, listener.tables)
            if not page:
                break
            events = [e for e in (listener.accept(c, cache) for c in page) if e is not None]
            listener.last = page[-1].position
            if events:
                return events
        listener.catching_up = False
        queued = list(listener.pending)
        listener.pending.clear()
        for item in queued:
            if isinstance(item, list):
                accepted = [e for e in (listener.accept(c, cache) for c in item if isinstance(c, Logged))
                            if e is not None]
                if accepted:
                    listener.pending.append(accepted)
            else:
                listener.pending.append(item)
        return None

    def close(self) -> None:
        self.hub.listeners.discard(self.listener)
        self.listener.end()


async def listen(app, call, principal, tables: list[str], where: dict | None = None,
                 after: str | None = None) -> AsyncIterator[Event]:
    """Checks access (raises Tiddly's usual errors from tiddly/errors.py: unknown/invisible table,
    no read scope, bad where) before the first event; then yields events (only those after
    `after` if given, else from now on); the iteration ends when the principal's key is revoked.
    `call` is the native handler's `call` (blocking work in a worker thread).

    An async generator: its checks run at the first ``__anext__``. To have them answered
    before waiting for an event, use ``open_listener`` (then ``next()`` and ``close()``)."""
    subscription = await open_listener(app, call, principal, tables, where, after)
    try:
        while True:
            item = await subscription.next()
            if item is None:
                return
            if item == "tick":
                continue
            for event in item:
                yield event
    finally:
        subscription.close()


# -- the Server-Sent Events handler --------------------------------------------------------

async def _serve(app, scope, receive, send, call) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] not in ("GET", "HEAD"):
        for message in native.error_response(405, "method_not_allowed", f"{scope['method']} is not allowed on "
                                             f"{PATH}; it answers GET"):
            await send(message)
        return
    try:
        subscription = await _open(app, call, scope)
    except ApiError as exc:
        for message in _error(exc):
            await send(message)
        return
    gone = asyncio.get_running_loop().create_task(_watch_disconnect(receive, subscription))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _headers(app, scope)})
        await send({"type": "http.response.body", "body": b"retry: 1000\n: listening\n\n", "more_body": True})
        while True:
            item = await subscription.next()
            if item is None:
                break
            await send({"type": "http.response.body", "body": _encoded(item), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:  # the client went away
        pass
    finally:
        subscription.close()
        gone.cancel()


async def _open(app, call, scope) -> Subscription:
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                           keep_blank_values=True).items()}
    headers = dict(scope.get("headers") or [])
    token = headers.get(b"authorization", b"").decode("latin-1") or query.get("access_token") or None
    principal = await authenticate(app, call, token)
    tables = [t.strip() for t in query.get("tables", "").split(",") if t.strip()]
    where = jsonio.loads(query["where"]) if query.get("where") else None
    after = query.get("after") or headers.get(b"last-event-id", b"").decode("latin-1") or None
    return await open_listener(app, call, principal, tables, where, after)


def _revocable(principal: Principal) -> str:
    """What the poller checks for a listener: its key's name, or open mode (ended by the first key)."""
    return OPEN_MODE if principal.kind == "open" else principal.name


async def _watch_disconnect(receive, subscription: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.close()


def _encoded(item) -> bytes:
    if item == "tick":
        return b": keep-alive\n\n"
    return b"".join(b"id: %s\nevent: %s\ndata: %s\n\n" % (e.position.encode(), e.op.encode(), jsonio.dumps(e.data()))
                    for e in item)


def _headers(app, scope) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
    origin = dict(scope.get("headers") or []).get(b"origin")
    if origin and guard.origin_allowed(app.extensions["tiddly"].config, origin.decode("latin-1")):
        headers.append((b"access-control-allow-origin", origin))
    return headers


def _error(exc: ApiError) -> tuple[dict, dict]:
    body = {"status": "error", "error": exc.message, "code": exc.code}
    if exc.details:
        body["details"] = exc.details
    encoded = jsonio.dumps(body)
    return ({"type": "http.response.start", "status": exc.status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())]},
            {"type": "http.response.body", "body": encoded})
