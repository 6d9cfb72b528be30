"""supabase-js's Realtime driven from Python: tests/clients/realtime.mjs in a node process,
told what to do one command at a time, its reports read as they come (for test_realtime.py)."""
from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Callable

REPORT_TIMEOUT_S = 15


class Realtime:
    """One node process holding any number of supabase-js clients and channels."""

    def __init__(self, command: list[str], url: str):
        self.process = subprocess.Popen([*command, "--url", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, bufsize=1)
        self.reports: queue.Queue = queue.Queue()
        self.seen: list[dict] = []  # reports read but not yet asked for
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.reports.put(json.loads(line))

    def do(self, op: str, **args) -> None:
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()

    def client(self, name: str, key: str | None, lib: str = "2.119", vsn: str = "2.0.0") -> None:
        self.do("client", name=name, key=key, lib=lib, vsn=vsn)

    def subscribe(self, client: str, channel: str, bindings: list[dict], topic: str | None = None,
                  config: dict | None = None) -> dict:
        """Subscribe and wait for the channel's first status (SUBSCRIBED, CHANNEL_ERROR, ...)."""
        self.do("subscribe", client=client, channel=channel, topic=topic or channel, bindings=bindings,
                config=config)
        return self.expect(lambda r: r["kind"] == "status" and r["channel"] == channel)

    def expect(self, wanted: Callable[[dict], bool], timeout: float = REPORT_TIMEOUT_S) -> dict:
        """The first report ``wanted`` accepts (the others stay for later), or an AssertionError."""
        for index, report in enumerate(self.seen):
            if wanted(report):
                return self.seen.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                report = self.reports.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(f"no such report in {timeout} s; reports so far: {self.seen[-20:]}") from None
            if report["kind"] == "crash":
                raise AssertionError(f"realtime.mjs failed: {report['error']}")
            if wanted(report):
                return report
            self.seen.append(report)

    def changes(self, channel: str, count: int, timeout: float = REPORT_TIMEOUT_S) -> list[dict]:
        """The next ``count`` changes a channel's handlers got, in order: (binding, payload) dicts."""
        return [self.expect(lambda r: r["kind"] == "change" and r["channel"] == channel, timeout)
                for _ in range(count)]

    def quiet(self, channel: str, seconds: float = 1.0) -> list[dict]:
        """The changes a channel got within ``seconds`` (to assert there were none)."""
        time.sleep(seconds)
        while True:
            try:
                self.seen.append(self.reports.get_nowait())
            except queue.Empty:
                break
        got = [r for r in self.seen if r["kind"] == "change" and r["channel"] == channel]
        self.seen = [r for r in self.seen if r not in got]
        return got

    def close(self) -> str:
        """Stop node; its stderr."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stderr.read()
