"""The door between granian and the app: an ASGI app, on each worker's event loop, that reads a
request's body before the request takes one of the worker's slots, then runs the Flask (WSGI)
app in a thread of the worker's bounded pool.

- A worker has ``--threads`` slots: at most that many requests run the app at once. A body up
  to ``max_body_bytes`` (the JSON limit) is read whole first, on the event loop, so a client
  that sends headers and then stalls costs a coroutine, not a thread or a slot.
- A longer body (a CSV or NDJSON import) is streamed into the app as it arrives, so it holds a
  slot while it is sent: at most half the slots (at least one) take such bodies at once; the
  others wait for their turn without a slot.
- Every ``max_body_bytes`` of a body must arrive within ``body_timeout_s``; past that the
  request is refused (408) or, in a streamed import, rolled back. A body cut short of its
  Content-Length (the client closed) never reaches the app whole: a read body is dropped, a
  streamed one raises in the app, which rolls its transaction back.
- One client address may have ``max_pending_bodies_per_client`` requests whose body is still
  arriving; more are a 429 at once.
- ``/-/health`` takes no slot and no client cap: it runs in a thread of its own.
- Headers longer than ``max_header_bytes`` in all are a 431; a path holding an encoded ``/``
  (``%2F``) is a 400, since routing sees the decoded path.
- Paths registered through ``tiddly.web.native`` are answered by their async handler on the
  event loop, outside the slots (a Server-Sent-Events stream or a WebSocket holds no slot).
"""
from __future__ import annotations

import asyncio
import functools
import io
import logging
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tiddly.errors import ApiError
from tiddly.web import native

access_logger = logging.getLogger("tiddly.access")
log = logging.getLogger("tiddly")
HEALTH_PATH = "/-/health"
FLUSH_BYTES = 64 * 1024  # a streamed response reaches the client in chunks of about this size
ARRIVING_S = 0.25  # a body not in within this of its headers counts as still arriving (the client cap);
# generous, so that a loaded machine never counts a body that came with its headers


@dataclass(frozen=True)
class Limits:
    body_limit: int = 1_000_000        # max_body_bytes: read whole before a slot
    body_timeout_s: float = 30         # each body_limit bytes must arrive within this
    per_client: int = 32               # requests from one address whose body is still arriving; 0: no cap
    header_bytes: int = 65_536         # names and values of all headers
    postgrest_path: str = "/rest/v1"   # errors under it are in PostgREST's shape


class BodyTimeout(Exception):
    pass


class BodyTooSlow(ApiError):
    status, code = 408, "request_timeout"
    doc = "The request body arrived too slowly (body_timeout_s); a streamed import is rolled back."


class ClientGone(Exception):
    pass


class Admission:
    """The ASGI app granian runs in each worker."""

    def __init__(self, app: Callable, slots: int, limits: Limits, access_log: bool = False):
        self.app, self.limits, self.access_log = app, limits, access_log
        self.slot_count = slots
        self.pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="tiddly-slot")
        self.health_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiddly-health")
        self.pending: dict[str, int] = {}  # client address -> requests whose body is arriving
        self._slots: asyncio.Semaphore | None = None  # made on the worker's loop, at the first request
        self._stream_slots: asyncio.Semaphore | None = None

    # -- dispatch ---------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.slot_count)
            self._stream_slots = asyncio.Semaphore(max(1, self.slot_count // 2))
        kind = scope["type"]
        handler = native.handler_for(self.app, kind, scope["path"])
        if handler is not None and kind == "http":  # a stream (/-/changes): logged when it ends
            await self._logged(scope, send, lambda logged_send: handler(scope, receive, logged_send, self.call))
        elif handler is not None:
            await handler(scope, receive, send, self.call)
        elif kind == "http":
            await self._logged(scope, send, lambda logged_send: self._answer(scope, receive, logged_send))
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def call(self, fn: Callable, *args, **kwargs):
        """A native handler's blocking work, in a slot (see tiddly/web/native.py)."""
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def _logged(self, scope: dict, send: Callable, answer: Callable) -> None:
        """``answer(send)``, and with --access-log its line once it is done."""
        if not self.access_log:
            await answer(send)
            return
        started = time.time()
        answered = [499, b"-"]  # 499: the client went before an answer

        async def counted_send(message):
            if message["type"] == "http.response.start":
                answered[:] = [message["status"], dict(message["headers"]).get(b"content-length", b"-")]
            await send(message)

        try:
            await answer(counted_send)
        finally:
            access_logger.info(access_line(scope, answered[0], answered[1].decode("latin-1"), started))

    async def _answer(self, scope: dict, receive: Callable, send: Callable) -> None:
        refusal = self._refusal(scope)
        if refusal:
            await self._refuse(scope, send, *refusal)
            return
        length, chunked = _body_size(scope)
        if length == -1:
            await self._refuse(scope, send, 400, "bad_request", "the Content-Length header is not a number")
            return
        if scope["path"] == HEALTH_PATH:
            body = await self._read_or_answer(scope, receive, send, length or 0, capped=False)
            if body is not None:
                await self._run_app(scope, io.BytesIO(body), len(body), send, self.health_pool)
            return
        if length is not None and length <= self.limits.body_limit:
            body = await self._read_or_answer(scope, receive, send, length, capped=True) if length else b""
            if body is not None:
                async with self._slots:
                    await self._run_app(scope, io.BytesIO(body), length, send, self.pool)
            return
        await self._stream(scope, receive, send, length)

    # -- bodies -----------------------------------------------------------------------------

    async def _read_or_answer(self, scope, receive, send, length: int, capped: bool) -> bytes | None:
        """The whole body, or None when the request was answered (a timeout, the cap) or its
        client went away before sending it all (nothing is answered then). A body that came
        with its headers is not counted against the client's cap: only one still arriving is."""
        started = time.monotonic()
        deadline = started + self.limits.body_timeout_s
        client, entered = _client(scope), False
        parts, got = [], 0
        try:
            while True:
                pending = asyncio.ensure_future(receive())
                if not entered:
                    await asyncio.wait({pending}, timeout=max(0.0, started + ARRIVING_S - time.monotonic()))
                    if not pending.done():
                        if capped and not self._enter(client):
                            pending.cancel()
                            await self._refuse(scope, send, 429, "too_many_requests",
                                               f"this address has {self.limits.per_client} requests whose body is "
                                               "still arriving; send the bodies, or wait for their answers",
                                               [(b"retry-after", b"1")])
                            return None
                        entered = capped
                message = await self._receive_by(lambda: pending, deadline)
                chunk = message.get("body", b"")
                parts.append(chunk)
                got += len(chunk)
                if not message.get("more_body"):
                    break
        except BodyTimeout:
            await self._refuse(scope, send, 408, "request_timeout", self._timeout_message())
            return None
        except ClientGone:
            return None
        finally:
            if entered:
                self._leave(client)
        return b"".join(parts) if got >= length else None  # short: the client went

    async def _receive_by(self, receive: Callable, deadline: float) -> dict:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise BodyTimeout() from None
        if message["type"] != "http.request":
            raise ClientGone()
        return message

    def _timeout_message(self) -> str:
        return _timeout_message(self.limits)

    def _enter(self, client: str) -> bool:
        count = self.pending.get(client, 0)
        if self.limits.per_client and count >= self.limits.per_client:
            return False
        self.pending[client] = count + 1
        return True

    def _leave(self, client: str) -> None:
        count = self.pending[client] - 1
        if count:
            self.pending[client] = count
        else:
            del self.pending[client]

    async def _stream(self, scope: dict, receive: Callable, send: Callable, length: int | None) -> None:
        """A body longer than the JSON limit (or chunked): the app reads it as it arrives, in a slot."""
        client = _client(scope)
        if not self._enter(client):
            await self._refuse(scope, send, 429, "too_many_requests",
                               f"this address has {self.limits.per_client} requests whose body is still arriving",
                               [(b"retry-after", b"1")])
            return
        try:
            # The first bytes come before a slot is taken: a chunked body that turns out to be
            # short runs as any other; a client that sends nothing waits without a slot.
            loop = asyncio.get_running_loop()
            body = _Incoming(receive, loop, self.limits, length)
            try:
                await body.prefetch()
            except BodyTimeout:
                await self._refuse(scope, send, 408, "request_timeout", self._timeout_message())
                return
            except ClientGone:
                return
            if body.complete:
                data = body.buffered()
                async with self._slots:
                    await self._run_app(scope, io.BytesIO(data), len(data), send, self.pool)
                return
            async with self._stream_slots, self._slots:
                await self._run_app(scope, io.BufferedReader(body, 64 * 1024), length, send, self.pool)
        finally:
            self._leave(client)

    # -- the app in a thread ------------------------------------------------------------------

    async def _run_app(self, scope: dict, body, length: int | None, send: Callable, pool) -> None:
        loop = asyncio.get_running_loop()
        environ = wsgi_environ(scope, body, length)
        response = _Response(send, loop)
        try:
            await loop.run_in_executor(pool, self._call_app, environ, response)
        except ClientGone:
            return
        except Exception:  # noqa: BLE001 (Flask answers its own errors: this is one while streaming)
            log.exception("the app failed on %s %s", scope["method"], scope["path"])
            if not response.started:
                await self._refuse(scope, send, 500, "internal_error", "an internal error occurred; it has been logged")
            return
        await response.finish()

    def _call_app(self, environ: dict, response: "_Response") -> None:
        result = self.app(environ, response.start_response)
        try:
            for chunk in result:
                response.write(chunk)
        finally:
            if hasattr(result, "close"):
                result.close()

    # -- refusals ----------------------------------------------------------------------------

    def _refusal(self, scope: dict) -> tuple | None:
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.limits.header_bytes:
            return (431, "headers_too_large", f"the request headers are {size} bytes; at most "
                    f"{self.limits.header_bytes} are taken (max_header_bytes)")
        raw = scope.get("raw_path") or b""
        if b"%2f" in raw.lower():
            return (400, "bad_path", "a path segment may not hold an encoded '/' (%2F): routing sees it decoded, "
                    "so a table whose name holds '/' cannot be reached over HTTP")
        return None

    async def _refuse(self, scope: dict, send: Callable, status: int, code: str, message: str,
                      headers: list | None = None) -> None:
        prefix = self.limits.postgrest_path
        path = scope["path"]
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            body = _json({"code": code, "message": message, "details": None, "hint": None})
        else:
            body = _json({"status": "error", "error": message, "code": code})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})


def _timeout_message(limits: Limits) -> str:
    return (f"the request body arrived too slowly: each {limits.body_limit} bytes must arrive within "
            f"{limits.body_timeout_s:g} s (body_timeout_s)")


def _json(value: dict) -> bytes:
    import json
    return json.dumps(value).encode()


def _client(scope: dict) -> str:
    client = scope.get("client")
    return client[0] if client else ""


def _body_size(scope: dict) -> tuple[int | None, bool]:
    """(Content-Length, or None when there is none; -1 when it is not a number), chunked?"""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1, False
            if length < 0:
                return -1, False
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is None and not chunked and scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
        length = 0
    return length, chunked


class _Incoming(io.RawIOBase):
    """A body streamed into the app's thread from the event loop, with the read deadline; it
    raises, rather than end quietly, when the client goes before its Content-Length arrived."""

    def __init__(self, receive: Callable, loop, limits: Limits, length: int | None):
        self.receive, self.loop, self.limits, self.length = receive, loop, limits, length
        self.pending = b""
        self.got = 0
        self.complete = False
        self.started = time.monotonic()

    def readable(self) -> bool:
        return True

    def _deadline(self) -> float:
        # each body_limit bytes earns body_timeout_s more: a slow trickle ends, a steady upload goes on
        return self.started + self.limits.body_timeout_s * (1 + self.got // max(1, self.limits.body_limit))

    async def _next(self) -> bytes:
        try:
            message = await asyncio.wait_for(self.receive(), max(0.0, self._deadline() - time.monotonic()))
        except asyncio.TimeoutError:
            raise BodyTimeout() from None
        if message["type"] != "http.request":
            raise ClientGone()
        chunk = message.get("body", b"")
        self.got += len(chunk)
        if not message.get("more_body"):
            self.complete = True
            if self.length is not None and self.got < self.length:
                raise ClientGone()
        return chunk

    async def prefetch(self) -> None:
        """Read until more than the JSON limit arrived, or the body ended."""
        parts = []
        while not self.complete and self.got <= self.limits.body_limit:
            parts.append(await self._next())
        self.pending = b"".join(parts)

    def buffered(self) -> bytes:
        return self.pending

    def readinto(self, buffer) -> int:
        while not self.pending:
            if self.complete:
                return 0
            try:
                self.pending = asyncio.run_coroutine_threadsafe(self._next(), self.loop).result()
            except BodyTimeout:  # not an OSError: werkzeug would make that a bare 400
                raise BodyTooSlow(_timeout_message(self.limits)) from None
            except ClientGone:
                raise OSError("the client closed the connection before its body was complete") from None
        count = min(len(buffer), len(self.pending))
        buffer[:count], self.pending = self.pending[:count], self.pending[count:]
        return count


class _Response:
    """start_response and the body, from the app's thread to the event loop: small answers go in
    one piece after the app returns; a streamed one (an export) in chunks of ~FLUSH_BYTES."""

    def __init__(self, send: Callable, loop):
        self.send, self.loop = send, loop
        self.status = 500
        self.headers: list = []
        self.parts: list[bytes] = []
        self.size = 0
        self.started = False

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info and self.started:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return self.write

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.parts.append(chunk)
        self.size += len(chunk)
        if self.size >= FLUSH_BYTES:
            future = asyncio.run_coroutine_threadsafe(self._flush(more=True), self.loop)
            try:
                future.result()
            except OSError:
                raise ClientGone() from None

    async def _flush(self, more: bool) -> None:
        if not self.started:
            self.started = True
            await self.send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        body, self.parts, self.size = b"".join(self.parts), [], 0
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def finish(self) -> None:
        try:
            await self._flush(more=False)
        except OSError:
            pass


def wsgi_environ(scope: dict, body, length: int | None) -> dict:
    server = scope.get("server") or ("127.0.0.1", 0)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0], "SERVER_PORT": str(server[1]),
        "REMOTE_ADDR": client[0], "REMOTE_PORT": str(client[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "SERVER_SOFTWARE": "granian",
        "RAW_URI": (scope.get("raw_path") or b"").decode("latin-1"),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": body,
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
            continue
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            if key == "TRANSFER_ENCODING":
                environ["HTTP_TRANSFER_ENCODING"] = text
            continue
        key = "HTTP_" + key
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + text
        else:
            environ[key] = text
    return environ


# Query parameters that carry a key where a client cannot send a header (EventSource at
# /-/changes, Realtime's WebSocket): never written to the access log.
_SECRET_PARAMETER = re.compile(r"(^|&)(access_token|apikey)=[^&]*", re.IGNORECASE)


def access_line(scope: dict, status: int, size: str, started: float) -> str:
    """One line per request, in the combined format (with the milliseconds it took at the end)."""
    headers = dict(scope["headers"])
    query = _SECRET_PARAMETER.sub(r"\1\2=[hidden]", scope.get("query_string", b"").decode("latin-1"))
    target = scope["path"] + (f"?{query}" if query else "")
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(started))
    elapsed_ms = (time.time() - started) * 1000
    client = scope.get("client") or ("-", 0)
    return (f'{client[0]} - - [{when}] "{scope["method"]} {target} HTTP/{scope.get("http_version", "1.1")}" '
            f'{status} {size} "{headers.get(b"referer", b"-").decode("latin-1")}" '
            f'"{headers.get(b"user-agent", b"-").decode("latin-1")}" {elapsed_ms:.1f}ms')
