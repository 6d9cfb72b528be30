"""The door between the HTTP server and the app: a request's body is read before the request
takes one of the worker's slots, so a client that sends headers and then stalls waits in a
thread of its own (the server's, parked in Rust without the GIL) and never holds a slot.

A worker has ``--threads`` slots: at most that many requests run the app at once, as before.
A body up to ``body_limit`` bytes (the JSON limit) is read whole first; a longer one (a CSV or
NDJSON import, streamed into the database) or one the app refuses outright (413) is left to
the app, as it streams it.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable

access_logger = logging.getLogger("tiddly.access")


class Admission:
    def __init__(self, app: Callable, slots: int, body_limit: int, access_log: bool = False):
        self.app, self.body_limit = app, body_limit
        self.slots = threading.BoundedSemaphore(slots)
        self.handle = self._logged if access_log else self._admitted

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.handle(environ, start_response)

    def _admitted(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        read_body_first(environ, self.body_limit)
        with self.slots:
            return self.app(environ, start_response)

    def _logged(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        answered: list = []

        def recording(status, headers, exc_info=None):
            answered[:] = [status, headers]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        started = time.time()
        try:
            return self._admitted(environ, recording)
        finally:
            access_logger.info(access_line(environ, *(answered or ["500", []]), started))


def read_body_first(environ: dict, limit: int) -> None:
    """Replace wsgi.input by the body, read now, when it is no longer than ``limit``."""
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            size = int(length)
        except ValueError:
            return  # the app answers it
        if 0 < size <= limit:
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(size))
    elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        stream = environ["wsgi.input"]
        head = stream.read(limit + 1)
        environ["wsgi.input"] = io.BytesIO(head) if len(head) <= limit else io.BufferedReader(_Rejoined(head, stream))


class _Rejoined(io.RawIOBase):
    """The bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count], self.head = self.head[:count], self.head[count:]
            return count
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def access_line(environ: dict, status: str, headers: list, started: float) -> str:
    """One line per request, in the combined format (with the milliseconds it took at the end)."""
    query = environ.get("QUERY_STRING")
    target = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
    size = next((v for k, v in headers if k.lower() == "content-length"), "-")
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(started))
    elapsed_ms = (time.time() - started) * 1000
    return (f'{environ.get("REMOTE_ADDR", "-")} - - [{when}] "{environ.get("REQUEST_METHOD")} {target} '
            f'{environ.get("SERVER_PROTOCOL")}" {status.split(" ", 1)[0]} {size} '
            f'"{environ.get("HTTP_REFERER", "-")}" "{environ.get("HTTP_USER_AGENT", "-")}" {elapsed_ms:.1f}ms')
