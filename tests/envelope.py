"""Assertions on Tiddly's response envelope, shared by the HTTP test modules."""
from __future__ import annotations

# SQL keywords (as SQL writes them) and driver or traceback words (any case) that
# would show internals leaking into a response.
SQL_MARKERS = ("SELECT", "INSERT", "UPDATE ", "DELETE FROM", " WHERE ")
DRIVER_MARKERS = ("sqlalchemy", "psycopg", "pymysql", "sqlite3", "traceback", "mariadb", "(Background")


def assert_no_leak(text: str) -> None:
    for marker in SQL_MARKERS:
        assert marker not in text, f"{marker!r} leaked into {text!r}"
    for marker in DRIVER_MARKERS:
        assert marker.lower() not in text.lower(), f"{marker!r} leaked into {text!r}"


def assert_error(response, status: int, code: str) -> dict:
    """The response is the error envelope with this status and code; returns the body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == "error"
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code, body
    assert set(body) <= {"status", "error", "code", "details"}
    assert_no_leak(body["error"])
    return body


def ok(response, status: int = 200) -> dict:
    """The response is a success envelope with this status; returns the body."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert body["status"] == "success", body
    return body
