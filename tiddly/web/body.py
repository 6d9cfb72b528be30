"""The request body, for every door (Tiddly's own API, the PostgREST dialect): whole, or a 4xx.

A body cut short of its Content-Length (the client closed the socket) is refused, never
taken as complete: whatever the WSGI server hands over, nothing of it is stored."""
from __future__ import annotations

import io

from flask import request
from werkzeug.exceptions import ClientDisconnected

from tiddly.errors import PayloadTooLarge

SHORT = "the request body ended before its Content-Length: the client closed the connection"


def raw_body() -> bytes:
    """The body, or a 413 when it is larger than the configured limit."""
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    # A body without Content-Length (chunked) is cut at the limit by werkzeug, silently: refuse it.
    if request.content_length is None and limit is not None and len(raw) >= limit \
            and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    if request.content_length is not None and len(raw) < request.content_length:
        raise ClientDisconnected(SHORT)
    return raw


def import_stream() -> io.BufferedReader:
    """The body as a stream for an import: it raises, rather than ends, where the client went
    away before its Content-Length arrived, so the import rolls back."""
    return io.BufferedReader(_Whole(request.stream, request.content_length), 64 * 1024)


class _Whole(io.RawIOBase):
    def __init__(self, stream, length: int | None):
        self.stream, self.left = stream, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        if not data and self.left:
            raise ClientDisconnected(SHORT)
        if self.left is not None:
            self.left -= len(data)
        buffer[:len(data)] = data
        return len(data)
