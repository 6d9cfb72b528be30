"""The HTTP side of row ETags (the rules are in ``services/etags.py``): the ``ETag`` header of
an answer holding one row, and a write's ``If-Match`` / ``If-None-Match`` read off the request."""
from __future__ import annotations

from flask import request

from tiddly.errors import BadQuery
from tiddly.services import etags


def etag_header(row: dict) -> dict[str, str]:
    return {"ETag": f'"{etags.row_etag(row)}"'}


def precondition() -> etags.Precondition | None:
    """The If-Match / If-None-Match of a write of one row by its key, if it sends either."""
    if_match, if_none_match = (name in request.headers for name in ("If-Match", "If-None-Match"))
    if not (if_match or if_none_match):
        return None
    return etags.Precondition(if_match=_tags(request.if_match, weak=False) if if_match else None,
                              if_none_match=_tags(request.if_none_match, weak=True) if if_none_match else None)


def refuse_conditions(what: str) -> None:
    """A write that is not of one row by its key has no ETag to check: a condition would go unheard."""
    if "If-Match" in request.headers or "If-None-Match" in request.headers:
        raise BadQuery(f"If-Match and If-None-Match apply to a write of one row by its key; {what}")


def _tags(tags, weak: bool) -> frozenset[str]:
    return frozenset({etags.ANY}) if tags.star_tag else frozenset(tags.as_set(include_weak=weak))
