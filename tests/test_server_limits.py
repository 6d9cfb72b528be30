"""The bounds `tiddly serve` puts on one client, over real sockets on every database: a body read
deadline, a cap on the bodies one address may have arriving, /-/health answered whatever the
load, the size of the headers, and a path holding an encoded '/'."""
from __future__ import annotations

import json
import socket
import time

import requests

PROMPT = 15  # seconds: a correctness bound, not a timing target


def _open(port: int, head: bytes, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
    sock.sendall(head + first)
    return sock


def _head(path: str, media: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {media}\r\nContent-Length: {length}\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed without an answer"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                      b"0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), rest


def _count(server, text: str) -> int:
    return requests.request("FETCH", server.url + "/dual", json={"where": {"text": text}, "count": True, "limit": 0},
                            timeout=PROMPT).json()["count"]


def test_a_body_that_does_not_arrive_in_time_is_a_408_and_stores_nothing(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=1, threads=2,
                                 env={"TIDDLY_BODY_TIMEOUT_S": "2", "TIDDLY_MAX_BODY_BYTES": "2000"})
    stalled = _open(server.port, _head("/dual", "application/json", 100), b"{")
    lines = b"text\n" + b"slow\n" * 1000  # 5,005 bytes: past the JSON limit, an import streamed into the database
    importing = _open(server.port, _head("/dual", "text/csv", len(lines) + 10), lines[:3000])
    trickling = _open(server.port, _head("/dual", "application/json", 30), b"")
    started = time.monotonic()
    for byte in json.dumps({"text": "trickle"}).encode()[:12]:  # one byte every 0.3 s: 12 bytes never finish it
        try:
            trickling.sendall(bytes([byte]))
        except OSError:  # answered and closed at the deadline
            break
        time.sleep(0.3)
    try:
        for sock in (stalled, importing, trickling):
            status, body = _answer(sock)
            assert status == 408 and json.loads(body)["code"] == "request_timeout", body
        assert time.monotonic() - started < PROMPT
    finally:
        for sock in (stalled, importing, trickling):
            sock.close()
    assert _count(server, "slow") == 0
    whole = requests.post(server.url + "/dual", data=lines, headers={"Content-Type": "text/csv"}, timeout=PROMPT)
    assert whole.status_code == 201 and _count(server, "slow") == 1000


def test_one_address_may_have_only_so_many_bodies_arriving(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=1, threads=2, env={"TIDDLY_MAX_PENDING_BODIES_PER_CLIENT": "4"})
    body = json.dumps({"text": "held"}).encode()
    held = [_open(server.port, _head("/dual", "application/json", len(body)), body[:1]) for _ in range(4)]
    try:
        time.sleep(0.3)
        refused = _open(server.port, _head("/dual", "application/json", len(body)), body[:1])
        status, answer = _answer(refused)
        refused.close()
        assert status == 429 and json.loads(answer)["code"] == "too_many_requests", answer
        # requests whose bodies are in, and health, are answered meanwhile
        assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200
        assert requests.post(server.url + "/dual", json={"text": "other"}, timeout=PROMPT).status_code == 201
        for sock in held:
            sock.sendall(body[1:])
        assert [_answer(sock)[0] for sock in held] == [201] * 4
    finally:
        for sock in held:
            sock.close()
    assert _count(server, "held") == 4


def test_stalled_imports_leave_health_and_other_requests_answered(db_url, live_server_factory):
    """Eight imports that stall once past the JSON limit (so they are streamed into the
    database, each in a slot): every slot of a 2 x 4 server, before. On SQLite, which has one
    writer, other writes wait for the import holding it (at most body_timeout_s): reads do not."""
    server = live_server_factory(db_url, workers=2, threads=4, env={"TIDDLY_MAX_BODY_BYTES": "2000"})
    for _ in range(20):  # each worker's first page signs cursors with the stored secret: read it before
        requests.get(server.url + "/dual?limit=1", timeout=PROMPT)
    lines = b"text\n" + b"stalled\n" * 1000
    stalled = [_open(server.port, _head("/dual", "text/csv", len(lines)), lines[:3000]) for _ in range(8)]
    try:
        time.sleep(0.5)
        for _ in range(10):  # fresh connections, so both workers answer
            assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200
            assert requests.get(server.url + "/dual?limit=1", timeout=PROMPT).status_code == 200
            if not db_url.startswith("sqlite"):
                assert requests.post(server.url + "/dual", json={"text": "x"}, timeout=PROMPT).status_code == 201
        for sock in stalled:
            sock.sendall(lines[3000:])
        assert [_answer(sock)[0] for sock in stalled] == [201] * 8
    finally:
        for sock in stalled:
            sock.close()
    assert _count(server, "stalled") == 8 * 1000


def test_headers_past_the_limit_are_a_431_that_says_so(tmp_path, live_server_factory):
    server = live_server_factory(f"sqlite:///{tmp_path / 'h.db'}", workers=1, threads=2)
    assert requests.get(server.url + "/books", headers={"X-Big": "x" * 60_000}, timeout=PROMPT).status_code == 200
    for size in (70_000, 500_000):
        answer = requests.get(server.url + "/books", headers={"X-Big": "x" * size}, timeout=PROMPT)
        assert answer.status_code == 431 and answer.json()["code"] == "headers_too_large"
        assert "max_header_bytes" in answer.json()["error"]
    small = live_server_factory(f"sqlite:///{tmp_path / 's.db'}", workers=1, threads=2,
                                env={"TIDDLY_MAX_HEADER_BYTES": "10000"})
    assert requests.get(small.url + "/books", headers={"X-Big": "x" * 20_000}, timeout=PROMPT).status_code == 431


def test_a_path_with_an_encoded_slash_is_a_clear_400_on_both_dialects(tmp_path, live_server_factory):
    server = live_server_factory(f"sqlite:///{tmp_path / 'p.db'}", workers=1, threads=2)
    native = requests.get(server.url + "/books%2Fx", timeout=PROMPT)
    assert native.status_code == 400 and native.json()["code"] == "bad_path" and "%2F" in native.json()["error"]
    dialect = requests.get(server.url + "/rest/v1/books%2fx", timeout=PROMPT)
    assert dialect.status_code == 400 and "%2F" in dialect.json()["message"]
    assert requests.get(server.url + "/books%20", timeout=PROMPT).status_code in (404, 200)  # other escapes route
