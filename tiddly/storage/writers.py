"""SQLite's writers take turns here, in the process and across processes, not in SQLite's busy handler."""
from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import Engine

from tiddly.errors import (
    DatabaseUnavailable,
)
from tiddly.storage.engines import SQLITE_BUSY_TIMEOUT_S, StateHome


class _SqliteWriterQueue:
    """SQLite has one writer at a time; its writers wait their turn here, not in SQLite.

    SQLite's busy handler polls for the write lock with sleeps of up to 100 ms, so under
    load a writer sleeps long after the lock came free while another takes it again and
    again. Here the threads of a process queue on a lock and are woken the moment the
    writer before them is done, and processes take turns on an exclusive lock on a file
    beside Tiddly's own database file (``<tiddly.db>.writer-lock``, or with ``--reflect``
    ``<sidecar>.writer-lock``: never beside someone else's file), polled every 5 ms at most.
    A write scope opened inside another one in the same thread passes (and then waits on
    SQLite's own lock, as before)."""

    def __init__(self, lock_path: str):
        self._threads = threading.RLock()
        self._path = lock_path
        self._fd: int | None = None
        self._depth = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        if not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise _busy()
        try:
            if self._depth == 0:
                self._lock_file(deadline)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self, deadline: float) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # a read-only folder or mount, most likely
                raise DatabaseUnavailable(f"the database cannot be written: the writer lock file beside it "
                                          f"cannot be opened ({exc.strerror})", cause="cannot_open") from None
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy() from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)


def _busy() -> DatabaseUnavailable:
    return DatabaseUnavailable("the database is busy with other writes; try again")


# One queue per database file and process. A forked child (a granian or gunicorn worker) starts with
# none: the parent's open lock file would be shared with it, and shared is not exclusive.
_SQLITE_WRITERS: dict[str, _SqliteWriterQueue] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()
os.register_at_fork(after_in_child=_SQLITE_WRITERS.clear)


def sqlite_writer_queue(engine: Engine, home: StateHome | None) -> _SqliteWriterQueue | None:
    path = home.sidecar if home else engine.url.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None  # an in-memory database has one connection's worth of writers anyway
    lock_path = str(Path(path).resolve()) + ".writer-lock"
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(lock_path, _SqliteWriterQueue(lock_path))
