"""Request bodies under `tiddly serve`, over raw sockets on every database: a body cut short of
its Content-Length stores nothing, a CSV field past its limit is refused as its bytes arrive."""
from __future__ import annotations

import json
import socket
import time

import pytest
import requests

PROMPT = 15  # seconds: a correctness bound, not a timing target


def _request_head(path: str, content_type: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _send_and_close(port: int, head: bytes, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=PROMPT) as sock:
        sock.sendall(head + body)
        time.sleep(0.3)  # the bytes are in; then the client goes, its body unfinished


def _count(server, prefix: str) -> int:
    answer = requests.request("FETCH", server.url + "/dual", timeout=PROMPT,
                              json={"where": {"text": {"like": prefix + "%"}}, "count": True, "limit": 0})
    assert answer.status_code == 200, answer.text
    return answer.json()["count"]


def _rows(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {n:04d}" for n in range(count)]


CUT_BODIES = {
    "json object": ("/dual", "application/json", lambda p: json.dumps({"text": p + " 0000"}).encode()),
    "json array": ("/dual", "application/json", lambda p: json.dumps([{"text": t} for t in _rows(p, 20)]).encode()),
    "csv": ("/dual", "text/csv", lambda p: ("text\n" + "".join(t + "\n" for t in _rows(p, 300))).encode()),
    "ndjson": ("/dual", "application/x-ndjson",
               lambda p: "".join(json.dumps({"text": t}) + "\n" for t in _rows(p, 300)).encode()),
    "rest/v1 csv": ("/rest/v1/dual", "text/csv", lambda p: ("text\n" + "\n".join(_rows(p, 300)) + "\n").encode()),
}


@pytest.fixture
def small_json_limit_server(db_url, live_server_factory):
    """A server whose JSON limit is small, so a few KB of CSV is a streamed import."""
    return live_server_factory(db_url, workers=1, threads=2, env={"TIDDLY_MAX_BODY_BYTES": "2000"})


@pytest.mark.parametrize("http_server", ["granian", "gunicorn"])
def test_a_body_cut_short_of_its_content_length_stores_nothing(db_url, live_server_factory, http_server):
    server = live_server_factory(db_url, workers=1, threads=2, extra_args=("--server", http_server))
    for kind, (path, media, make) in CUT_BODIES.items():
        prefix = "cut " + kind
        body = make(prefix)
        _send_and_close(server.port, _request_head(path, media, len(body) + 500), body)
        time.sleep(0.7)
        assert _count(server, prefix) == 0, f"{kind}: a cut-short body was stored"
        # the same body whole is stored, by the same route
        whole = requests.post(server.url + path, data=body, headers={"Content-Type": media}, timeout=PROMPT)
        assert whole.status_code == 201, (kind, whole.text)
        assert _count(server, prefix) > 0


def test_a_streamed_import_cut_short_stores_nothing(small_json_limit_server):
    server = small_json_limit_server
    for media, make in (("text/csv", lambda rows: "text\n" + "".join(t + "\n" for t in rows)),
                        ("application/x-ndjson", lambda rows: "".join(json.dumps({"text": t}) + "\n" for t in rows))):
        prefix = "streamed " + media
        body = make(_rows(prefix, 400)).encode()  # past the JSON limit: streamed into the database
        assert len(body) > 4 * 2000
        _send_and_close(server.port, _request_head("/dual", media, len(body) + 1000), body)
        time.sleep(0.7)
        assert _count(server, prefix) == 0, f"{media}: a cut-short streamed import was stored"
        whole = requests.post(server.url + "/dual", data=body, headers={"Content-Type": media}, timeout=PROMPT)
        assert whole.status_code == 201 and whole.json()["count"] == 400, whole.text


def test_a_csv_field_past_its_limit_is_refused_as_its_bytes_arrive(small_json_limit_server):
    """A quoted field that never ends: the answer comes once a line's worth arrived, while the
    client is still sending (it declared far more), not after the whole body."""
    server = small_json_limit_server
    declared = 300_000_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=PROMPT) as sock:
        sock.sendall(_request_head("/dual", "text/csv", declared) + b'text\n"')
        sent, answer = 0, b""
        sock.settimeout(0.05)
        started = time.monotonic()
        while b"\r\n\r\n" not in answer and time.monotonic() - started < PROMPT:
            try:
                sock.sendall(b"x" * 1000)
                sent += 1000
            except OSError:  # the server answered and closed: read what it said
                sock.settimeout(PROMPT)
            try:
                answer += sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                pass
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"longer than 2000 bytes" in answer and b"line 2" in answer
    assert sent < 1_000_000  # refused within a bounded number of bytes, not at the end of 300 MB
    assert _count(server, "x") == 0
