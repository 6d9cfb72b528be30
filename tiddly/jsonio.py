"""JSON in and out: one fast encoder for every response, one strict parser for every body."""
from __future__ import annotations

import base64
import decimal
from typing import Any

import orjson

from tiddly.errors import BadJson

MAX_DEPTH = 512  # nesting of arrays and objects in any JSON a client sends; Python recurses ~1000 deep


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS)


def encoded(payload: Any) -> orjson.Fragment:
    """``payload`` encoded once, to stand as it is inside what ``dumps`` encodes later (the same
    change sent to a thousand sockets)."""
    return orjson.Fragment(dumps(payload))


def parse_body(raw: bytes) -> Any:
    """Parse a JSON body. A body that is a JSON string holding JSON (the 2017
    client's ``json=json.dumps(obj)``) is decoded once more."""
    value = _loads(raw)
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        value = _loads(value)
    return value


def loads(raw: str | bytes) -> Any:
    """Parse JSON text strictly (no NaN, nesting capped); a BadJson when it is not."""
    return _loads(raw)


def _loads(raw) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadJson(f"the body is not valid JSON ({exc.msg})") from None
    brackets = (b"[", b"{") if isinstance(raw, (bytes, bytearray)) else ("[", "{")
    if raw.count(brackets[0]) + raw.count(brackets[1]) > MAX_DEPTH:  # else it cannot nest that deep
        _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    # orjson allows 1024 levels, but Python's own repr or json.dumps of such a value
    # (in an error message) would reach the recursion limit: a 500. Walk it level by level.
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise BadJson(f"the JSON nests deeper than {MAX_DEPTH} levels")
        deeper = []
        for item in level:
            if isinstance(item, (dict, list)):
                deeper.extend(item.values() if isinstance(item, dict) else item)
        level = [item for item in deeper if isinstance(item, (dict, list))]
