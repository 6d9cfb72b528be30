"""Native handlers: paths answered by an async function of their own, outside Flask, so that a
long-lived stream (Server-Sent Events at ``/-/changes``, a WebSocket at
``/realtime/v1/websocket``) holds no request slot and no thread.

The contract, for code that adds such a path:

1. Register in the app factory, before the app is served::

       from tiddly.web import native
       native.register(app, "/-/changes", changes_handler)                       # HTTP only
       native.register(app, "/realtime/v1/websocket", realtime, kinds=("websocket",))

   ``path`` matches the request path exactly (no parameters, no trailing-slash variant; the
   query string is the handler's to read). A registered path never reaches Flask: no route,
   no guard, no error envelope; the handler answers every method itself.

2. The handler is an ASGI 3 application with one more argument::

       async def changes_handler(scope, receive, send, call) -> None

   ``scope``, ``receive`` and ``send`` are ASGI's, for this one connection (``scope["type"]``
   is ``"http"`` or ``"websocket"``; ``scope["headers"]`` a list of lowercase ``(bytes, bytes)``;
   ``scope["client"]`` the peer's ``(address, port)``). Tiddly checks nothing for it: the
   handler authenticates the caller itself (``auth`` through ``call``), answers its own errors
   (``error_response`` below gives Tiddly's envelope), and must end when the client goes:
   ``receive()`` first returns the request's body as ``http.request`` messages (one with
   ``b""`` for a GET), then ``{"type": "http.disconnect"}`` once the client is gone
   (``"websocket.disconnect"``); a ``send`` after that raises ``OSError`` or returns quietly.
   The body is not read ahead or bounded for a native path: read it yourself, or ignore it.

3. ``call(fn, *args, **kwargs)`` awaits ``fn(*args, **kwargs)`` run in one of the worker's
   threads, taking one of its ``--threads`` slots while it runs, like any request. Everything
   that blocks (the database, the services, a password hash) goes through ``call``; the handler
   itself must never block, since one event loop serves every connection of the worker. Keep
   each call short (a query, a key check): never wait for events inside it. To wait for
   events, await an asyncio primitive; to wake it from a thread (an after-commit hook), use
   ``loop.call_soon_threadsafe`` with the loop from ``asyncio.get_running_loop()``, taken in
   the handler.

4. Where it runs: under ``tiddly serve`` (granian, ASGI: ``tiddly/cli/admission.py``) the
   handler runs on the worker's event loop and an idle stream costs a coroutine and a socket,
   nothing else. Under any WSGI server (``--server gunicorn``, ``gunicorn 'tiddly:create_app()'``,
   Flask's test client) an HTTP handler still works, through ``_OverWSGI`` below: it holds one
   of the server's threads for as long as it runs, so there streams are bounded by the server's
   threads. A WebSocket path needs ``tiddly serve``: a WSGI server answers it 426.

5. Every worker process builds its own app, so state shared by the connections of one worker
   (a listener list, an asyncio.Event) lives in the handler's closure; across workers and
   hosts, go through the database.

Nothing here imports the HTTP server.
"""
from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[..., Awaitable[Any]]
Handler = Callable[[dict, Callable, Callable, Call], Awaitable[None]]

_EXTENSION = "tiddly.native"


def register(app, path: str, handler: Handler, kinds: tuple[str, ...] = ("http",)) -> None:
    """Answer ``path`` with ``handler`` for the connection kinds named (``"http"``, ``"websocket"``)."""
    if not path.startswith("/"):
        raise ValueError(f"a native path starts with '/': {path!r}")
    routes = app.extensions.get(_EXTENSION)
    if routes is None:
        routes = app.extensions[_EXTENSION] = {}
        app.wsgi_app = _OverWSGI(app.wsgi_app, routes)
    for kind in kinds:
        routes[(kind, path)] = handler


def handler_for(app, kind: str, path: str) -> Handler | None:
    """The handler registered for this kind of connection at ``path``, if any."""
    routes = app.extensions.get(_EXTENSION)
    return routes.get((kind, path)) if routes else None


def error_response(status: int, code: str, message: str) -> tuple[dict, dict]:
    """Tiddly's error envelope as the two ASGI messages that send it."""
    body = json.dumps({"status": "error", "error": message, "code": code}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            {"type": "http.response.body", "body": body})


async def call_in_thread(fn, *args, **kwargs):
    """``call`` where no worker pool is at hand (a WSGI server): a thread of the default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: fn(*args, **kwargs))


# -- under a WSGI server ---------------------------------------------------------------------

class _OverWSGI:
    """The WSGI app, with registered paths answered by their handler in an event loop of the
    request's own: the server's thread waits on the chunks the handler sends."""

    def __init__(self, inner, routes: dict):
        self.inner, self.routes = inner, routes

    def __call__(self, environ: dict, start_response):
        path = environ.get("PATH_INFO", "")
        handler = self.routes.get(("http", path))
        if handler is None:
            if ("websocket", path) in self.routes:
                start_response("426 Upgrade Required", [("Content-Type", "application/json")])
                return [json.dumps({"status": "error", "code": "upgrade_required",
                                    "error": f"{path} is a WebSocket; it needs tiddly serve (granian)"}).encode()]
            return self.inner(environ, start_response)
        return _run_over_wsgi(handler, environ, start_response)


_DONE = object()


def _run_over_wsgi(handler: Handler, environ: dict, start_response):
    chunks: queue.Queue = queue.Queue(maxsize=16)
    gone = threading.Event()  # the server stopped iterating: the client went away
    scope = _scope_of(environ)
    body = environ["wsgi.input"].read() if environ.get("CONTENT_LENGTH") else b""

    async def receive():
        nonlocal body
        if body is not None:
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message
        while not gone.is_set():
            await asyncio.sleep(0.2)
        return {"type": "http.disconnect"}

    async def send(message):
        if gone.is_set():
            raise OSError("the client went away")
        await asyncio.get_running_loop().run_in_executor(None, chunks.put, message)

    def run():
        try:
            asyncio.run(handler(scope, receive, send, call_in_thread))
        except Exception as exc:  # noqa: BLE001 (a handler's error ends its response)
            chunks.put(exc)
        finally:
            chunks.put(_DONE)

    threading.Thread(target=run, daemon=True, name="tiddly-native").start()
    first = chunks.get()
    if isinstance(first, Exception) or first is _DONE:
        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
        return [b'{"status": "error", "error": "an internal error occurred", "code": "internal_error"}']
    start_response(f"{first['status']} {_REASONS.get(first['status'], '')}".rstrip(),
                   [(k.decode("latin-1"), v.decode("latin-1")) for k, v in first.get("headers", [])])

    def body_chunks():
        try:
            while True:
                message = chunks.get()
                if message is _DONE or isinstance(message, Exception):
                    return
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    return
        finally:
            gone.set()
            while chunks.get() is not _DONE:  # let the handler's thread finish its last put
                pass
    return body_chunks()


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 410: "Gone", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _scope_of(environ: dict) -> dict:
    headers = [(k[5:].replace("_", "-").lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in environ.items() if k.startswith("HTTP_")]
    for key, name in (("CONTENT_TYPE", b"content-type"), ("CONTENT_LENGTH", b"content-length")):
        if environ.get(key):
            headers.append((name, environ[key].encode("latin-1")))
    path = environ.get("PATH_INFO", "")
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": environ["REQUEST_METHOD"],
            "scheme": environ.get("wsgi.url_scheme", "http"), "path": path.encode("latin-1").decode("utf-8", "replace"),
            "raw_path": path.encode("latin-1"), "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
            "root_path": environ.get("SCRIPT_NAME", ""), "headers": headers,
            "client": (environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or 0)),
            "server": (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0))}
