"""Password hashing with the standard library's scrypt: salted, slow, self-describing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return "$".join([_PREFIX, f"{_N}:{_R}:{_P}", _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str | None) -> bool:
    try:
        prefix, params, salt, digest = (stored or "").split("$")
        n, r, p = (int(x) for x in params.split(":"))
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=n, r=r, p=p)
    except (ValueError, TypeError):
        return False
    return prefix == _PREFIX and hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
