"""Native handlers (tiddly/web/native.py) under `tiddly serve`'s server layer, over real sockets
on every database: 1,000 open Server-Sent-Events streams hold no request slot, so ordinary
requests are answered meanwhile; a WebSocket; the same HTTP handler under gunicorn.
The handlers are test-only (tests/stream_app.py); bench/streams.py measures the numbers."""
from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from serving import free_port, wait_healthy
from websockets.sync.client import connect

STREAMS = 1000
PROMPT = 30  # seconds: a correctness bound on a loaded 2-core machine, not a timing target
APP = Path(__file__).resolve().parent / "stream_app.py"


class StreamServer:
    def __init__(self, db_url: str, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, str(APP), "--database-url", db_url, "--port", str(self.port),
                                         *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_healthy(self.url, self.process, output=self.process.stderr)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def stream_server_factory():
    servers = []

    def start(db_url: str, *args: str) -> StreamServer:
        servers.append(StreamServer(db_url, *args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _open_stream(port: int, every: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
    sock.sendall(f"GET /-/test-stream?every={every} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the stream closed before {marker!r}: {data!r}"
        data += chunk
    return data


def _timed_gets(url: str, count: int) -> list[float]:
    session, seconds = requests.Session(), []
    for n in range(count):
        started = time.perf_counter()
        answer = session.get(f"{url}/dual/{n % 3 + 1}", timeout=PROMPT)
        seconds.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return sorted(seconds)


def _allow_sockets(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard) if hard != resource.RLIM_INFINITY else count,
                                                    hard))


def test_a_thousand_open_streams_leave_ordinary_requests_answered(db_url, stream_server_factory):
    _allow_sockets(STREAMS + 256)
    server = stream_server_factory(db_url, "--workers", "2", "--threads", "4")
    for n in range(3):
        assert requests.post(server.url + "/dual", json={"text": f"row {n}"}).status_code == 201
    quiet = _timed_gets(server.url, 100)
    streams = [_open_stream(server.port, every=3) for _ in range(STREAMS)]
    try:
        for sock in streams:  # each handler read the table through `call`, in a slot, then let it go
            head = _read_until(sock, b"event: hello\ndata: 3\n\n")
            assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
        loaded = _timed_gets(server.url, 100)
        assert requests.post(server.url + "/dual", json={"text": "while streaming"}, timeout=PROMPT).status_code == 201
        assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200
        for sock in streams:  # every stream is still open and served
            _read_until(sock, b": keep-alive\n\n")
    finally:
        for sock in streams:
            sock.close()
    p99 = loaded[98]
    assert p99 < max(1.0, 20 * quiet[98]), (quiet[98], p99)  # a correctness bound; bench/streams.py times it
    assert requests.get(server.url + "/dual/1", timeout=PROMPT).status_code == 200


def test_a_native_websocket_answers_through_call(db_url, stream_server_factory):
    server = stream_server_factory(db_url, "--workers", "1", "--threads", "2")
    requests.post(server.url + "/dual", json={"text": "one"})
    with connect(f"ws://127.0.0.1:{server.port}/-/test-ws", open_timeout=PROMPT) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=PROMPT) == "1 hello"
        websocket.send("again")
        assert websocket.recv(timeout=PROMPT) == "1 again"
    # an ordinary route is no WebSocket: refused at the handshake
    with pytest.raises(Exception):
        with connect(f"ws://127.0.0.1:{server.port}/dual", open_timeout=PROMPT):
            pass


def test_under_gunicorn_a_native_stream_holds_a_thread_and_works(tmp_path, stream_server_factory):
    server = stream_server_factory(f"sqlite:///{tmp_path / 'g.db'}", "--server", "gunicorn", "--workers", "1",
                                   "--threads", "4")
    streams = [_open_stream(server.port, every=0.5) for _ in range(2)]
    try:
        for sock in streams:
            _read_until(sock, b"event: hello\ndata: 0\n\n")
            _read_until(sock, b": keep-alive\n\n")
        assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200
        websocket = requests.get(server.url + "/-/test-ws", timeout=PROMPT)
        assert websocket.status_code == 426 and websocket.json()["code"] == "upgrade_required"
    finally:
        for sock in streams:
            sock.close()
