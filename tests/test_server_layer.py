"""The HTTP server under `tiddly serve` (granian, or gunicorn on request), over real sockets:
slow clients, stopping, long request lines, bodies longer than the JSON limit."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from serving import free_port, wait_healthy

STALLED = 48
PROMPT = 15  # seconds: a correctness bound (gunicorn never answers here), not a timing target:
# bench/slow_clients.py times it. One CI run saw a /-/health take over 5 s on a loaded machine.


def _stall(port: int, body: bytes, count: int) -> list[socket.socket]:
    """Connections that send a POST's headers and the first byte of its body, then nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=PROMPT * 4)
        sock.sendall(b"POST /dual HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:1])
        sockets.append(sock)
    return sockets


def _status_of_answer(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection without an answer"
        head += chunk
    return int(head.split()[1])


def test_stalled_bodies_leave_every_other_request_answered(db_url, live_server_factory):
    # 48 from one address: past the default cap on bodies arriving per client (a worker may take 32)
    server = live_server_factory(db_url, workers=2, threads=4, env={"TIDDLY_MAX_PENDING_BODIES_PER_CLIENT": "0"})
    row = requests.post(server.url + "/dual", json={"text": "before"}).json()["id"]
    body = json.dumps({"text": "slow"}).encode()
    sockets = _stall(server.port, body, STALLED)  # 6 times the 8 threads that run the app
    try:
        time.sleep(0.5)
        for _ in range(10):  # fresh connections, so both workers answer
            assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200
            assert requests.get(f"{server.url}/dual/{row}", timeout=PROMPT).json()["data"]["text"] == "before"
        # The stalled requests were only waiting: once their bodies come, each is stored.
        for sock in sockets:
            sock.sendall(body[1:])
        assert [_status_of_answer(sock) for sock in sockets] == [201] * STALLED
    finally:
        for sock in sockets:
            sock.close()
    counted = requests.request("FETCH", server.url + "/dual", json={"where": {"text": "slow"}, "count": True,
                                                                    "limit": 0}).json()
    assert counted["count"] == STALLED


def test_a_chunked_import_longer_than_the_json_limit_is_stored_whole(db_url, live_server_factory):
    """A body past the JSON limit is not read ahead: the import streams it, as before."""
    server = live_server_factory(db_url, workers=1, threads=2, env={"TIDDLY_MAX_BODY_BYTES": "2000"})
    lines = [b"text\n"] + [b"line %04d\n" % n for n in range(500)]  # about 5,000 bytes

    def chunks():
        for start in range(0, len(lines), 7):
            yield b"".join(lines[start:start + 7])

    imported = requests.post(server.url + "/dual", data=chunks(), headers={"Content-Type": "text/csv"})
    assert imported.status_code == 201 and imported.json()["count"] == 500
    last = requests.request("FETCH", server.url + "/dual", json={"where": {"text": "line 0499"}}).json()
    assert len(last["data"]) == 1


def test_a_request_line_too_long_for_the_server_is_a_414_and_a_long_one_reaches_tiddly(tmp_path, live_server_factory):
    server = live_server_factory(f"sqlite:///{tmp_path / 'x.db'}", workers=1, threads=2)
    long_ = requests.get(server.url + "/books?where=" + "x" * 60_000, timeout=PROMPT * 2)
    assert long_.status_code == 400 and long_.json()["code"] == "bad_json"
    too_long = requests.get(server.url + "/books?where=" + "x" * 70_000, timeout=PROMPT * 2)
    assert too_long.status_code == 414
    assert requests.get(server.url + "/-/health", timeout=PROMPT).status_code == 200


def _serve(tmp_path, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tiddly", "serve", "--port", str(port), *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_healthy(f"http://127.0.0.1:{port}", process)
    return process, port


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_the_server_promptly_and_cleanly(tmp_path, how):
    process, port = _serve(tmp_path)
    idle = requests.Session()
    assert idle.get(f"http://127.0.0.1:{port}/books").status_code == 200  # a keep-alive connection stays open
    stalled = _stall(port, b'{"text": "never"}', 4)
    started = time.monotonic()
    if how == "ctrl-c":  # a terminal sends SIGINT to the whole process group
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.terminate()
    try:
        code = process.wait(timeout=15)
    finally:
        for sock in stalled:
            sock.close()
    output = process.stdout.read()
    assert code == 0 and time.monotonic() - started < 10, output
    assert "Traceback" not in output and "Unexpected exit" not in output, output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/-/health", timeout=2)


def test_gunicorn_still_serves_on_request(tmp_path):
    process, port = _serve(tmp_path, "--server", "gunicorn", "--workers", "1", "--threads", "2",
                           "--access-log", "-")
    try:
        health = requests.get(f"http://127.0.0.1:{port}/-/health")
        assert health.status_code == 200 and health.headers["Server"].startswith("gunicorn")
        assert requests.post(f"http://127.0.0.1:{port}/books", json={"title": "Dune", "author": "Herbert"}).ok
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0]
    assert "(gunicorn, 1 workers x 2 threads)" in output
    assert '"POST /books HTTP/1.1" 201' in output
