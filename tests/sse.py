"""A Server-Sent Events client for the change feed's tests: ``Stream`` reads ``GET /-/changes``
in a thread of its own and keeps what arrives (events, keep-alive comments, the end)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import requests


@dataclass
class Received:
    id: str
    event: str
    data: dict

    @property
    def what(self) -> tuple:
        """What the change was, without its time: (table, op, key as a tuple of values)."""
        return self.data["table"], self.event, tuple(self.data["key"].values())


class Stream:
    def __init__(self, base: str, tables: str, headers: dict | None = None, **params):
        self.events: list[Received] = []
        self.comments: list[str] = []
        self.ended = threading.Event()
        self.response = requests.get(f"{base}/-/changes", params={"tables": tables, **params},
                                     headers=headers or {}, stream=True, timeout=(5, 120))
        self.status = self.response.status_code
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.error = self.response.json()
            self.ended.set()

    def _read(self) -> None:
        fields: dict = {}
        try:
            for raw in self.response.iter_lines(chunk_size=None, decode_unicode=False):
                line = raw.decode()
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif not line:
                    if "data" in fields:
                        self.events.append(Received(fields.get("id", ""), fields.get("event", "message"),
                                                    json.loads(fields["data"])))
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except (requests.RequestException, AttributeError, ValueError):
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        """The events once ``count`` have arrived (an AssertionError naming them when they do not)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and not self.ended.is_set():
            time.sleep(0.02)
        assert len(self.events) >= count, f"{len(self.events)} of {count} events arrived: {self.events}"
        return list(self.events)

    def settle(self, seconds: float = 1.0) -> list[Received]:
        """The events after a quiet moment (what should not arrive has had its chance)."""
        time.sleep(seconds)
        return list(self.events)

    def close(self) -> None:
        self.response.close()


def changes_after(base: str, tables: str, after: str, count: int, headers: dict | None = None,
                  timeout: float = 15) -> list[Received]:
    """Resume after ``after``: the first ``count`` events."""
    stream = Stream(base, tables, headers, after=after)
    try:
        return stream.wait_for(count, timeout)
    finally:
        stream.close()
