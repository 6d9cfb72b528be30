"""Real servers for the tests: a free port, waiting until a server answers its health check,
and `tiddly serve` in a subprocess (``LiveServer``). Every test that starts a server uses these."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiddly_command() -> str:
    """The ``tiddly`` script of the Python running the tests."""
    return shutil.which("tiddly") or os.path.join(os.path.dirname(sys.executable), "tiddly")


def wait_healthy(base: str, process: subprocess.Popen | None = None, timeout: float = 30,
                 output=None) -> None:
    """Wait until ``base``/-/health answers 200; an AssertionError with the server's output when
    ``process`` exits first or the time runs out (``output``: where that output is read from,
    by default the process's stdout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{_read(process, output)}")
        try:
            if requests.get(base + "/-/health", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # a busy machine may answer late
            time.sleep(0.1)
    if process is not None:
        process.kill()
    raise AssertionError(f"the server did not become healthy in {timeout} s:\n"
                         f"{_read(process, output) if process is not None else ''}")


def _read(process: subprocess.Popen, output) -> str:
    stream = output if output is not None else process.stdout
    return stream.read() if stream is not None else ""


class LiveServer:
    """`tiddly serve` in a subprocess, reached over real HTTP."""

    def __init__(self, database_url: str | None, workers: int = 2, threads: int = 4, extra_args=(), env=None,
                 wait: bool = True, cwd=ROOT, host: str = "127.0.0.1", port: int | None = None):
        """``database_url`` None: the server reads it from ``env``; ``wait`` False: call wait_ready();
        ``port``: this one (a server started again where its clients reconnect), else a free one."""
        self.port = port or free_port()
        bare = host.strip("[]")
        self.url = f"http://[{bare}]:{self.port}" if ":" in bare else f"http://{bare}:{self.port}"
        command = [sys.executable, "-m", "tiddly", "serve", "--host", host, "--port", str(self.port),
                   "--workers", str(workers), "--threads", str(threads),
                   *(("--database-url", database_url) if database_url else ()), *extra_args]
        self.process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_healthy(self.url, self.process, timeout)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read()
