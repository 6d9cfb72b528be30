"""JSON in and out: one fast encoder for every response, one strict parser for every body."""
from __future__ import annotations

import base64
import decimal
from typing import Any

import orjson

from errors import BadJson


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS)


def parse_body(raw: bytes) -> Any:
    """Parse a JSON body. A body that is a JSON string holding JSON (the 2017
    client's ``json=json.dumps(obj)``) is decoded once more."""
    value = _loads(raw)
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        value = _loads(value)
    return value


def _loads(raw) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadJson(f"the body is not valid JSON ({exc.msg})") from None
