"""What a PostgREST request's headers ask, beside its query: the schema (Accept-Profile,
Content-Profile), its preferences (Prefer) and the page it wants (Range, with limit/offset)."""
from __future__ import annotations

from flask import request

from tiddly.web.postgrest import grammar
from tiddly.web.postgrest.grammar import Node, PostgrestError

SCHEMA = "public"  # the one schema name clients may ask for (Accept-Profile / Content-Profile)


def profile(name: str | None) -> None:
    """Accept-Profile (reads) or Content-Profile (writes): the one schema there is, or a 406."""
    if name is not None and name != SCHEMA:
        raise PostgrestError(406, "PGRST106", f"Invalid schema: {name[:60]}",
                             hint=f"Only the following schemas are exposed: {SCHEMA}")


def prefer() -> dict[str, str]:
    known, other = grammar.parse_prefer(request.headers.getlist("Prefer"))
    if known.get("handling") == "strict" and other:
        raise PostgrestError(400, "PGRST122", "Invalid preferences given with handling=strict",
                             f"Invalid preferences: {', '.join(other)}")
    return known


def page(root: Node, max_limit: int) -> tuple[int, int]:
    """(offset, limit) from ``offset``/``limit`` and the Range header (their overlap), capped
    at the largest page Tiddly serves, as PostgREST's db-max-rows caps it."""
    offset = root.offset or 0
    end = offset + root.limit - 1 if root.limit is not None else None
    wanted = grammar.parse_range(request.headers.get("Range")) if request.method in ("GET", "HEAD") else None
    if wanted is not None:
        low, high = wanted
        offset = max(offset, low)
        end = high if end is None else (end if high is None else min(end, high))
    limit = max_limit if end is None else max(0, end - offset + 1)
    return offset, min(limit, max_limit)
