"""The request body as bytes, for every door (Tiddly's own API, the PostgREST dialect)."""
from __future__ import annotations

from flask import request

from tiddly.errors import PayloadTooLarge


def raw_body() -> bytes:
    """The body, or a 413 when it is larger than the configured limit."""
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    # A body without Content-Length (chunked) is cut at the limit by werkzeug, silently: refuse it.
    if request.content_length is None and limit is not None and len(raw) >= limit \
            and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return raw
