"""SQLite's writers take turns here, in the process and across processes, not in SQLite's busy handler.

SQLite has one writer at a time. Its busy handler polls for the write lock with sleeps of up to
100 ms, so under load a writer sleeps long after the lock came free. Here the threads of a process
queue first come, first served, each woken the moment the one before it is done (``_Turn``), and
processes take turns on an exclusive lock on a file beside Tiddly's own database file
(``<tiddly.db>.writer-lock``, or with ``--reflect`` ``<sidecar>.writer-lock``: never beside someone
else's file; ``_FileLock``). The writes of one process that queue together share one transaction
and one COMMIT: group commit, ``groups.py``.
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import Engine

from tiddly.errors import DatabaseUnavailable
from tiddly.storage import engines
from tiddly.storage.engines import StateHome

FILE_LOCK_POLL_S = 0.001  # the longest pause between two tries for another process's lock file


def busy() -> DatabaseUnavailable:
    return DatabaseUnavailable("the database is busy with other writes; try again")


class _Turn:
    """The threads of one process take turns, first come, first served: the turn passes straight to
    the thread that has waited longest (no thread barges in ahead of it). The thread whose turn it
    is sees how many wait (``waiting``), and takes the turn again freely (nested scopes pass)."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[tuple[int, threading.Lock]] = deque()

    def take(self, deadline: float) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner is None or self._owner == me:
                self._owner, self._depth = me, self._depth + 1
                return
            gate = threading.Lock()
            gate.acquire()
            waiter = (me, gate)
            self._queue.append(waiter)
        if gate.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return  # handed over: give() made this thread the owner
        with self._mutex:
            if waiter in self._queue:
                self._queue.remove(waiter)
                raise busy()
        # give() handed the turn over just as the wait ended: it is this thread's after all

    def give(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth:
                return
            if self._queue:
                self._owner, gate = self._queue.popleft()
                self._depth = 1
                gate.release()
            else:
                self._owner = None

    def held_here(self) -> bool:
        return self._owner == threading.get_ident()

    def waiting(self) -> int:
        return len(self._queue)


class _FileLock:
    """The exclusive lock on the writer-lock file, so that processes take turns. flock has no
    timeout, so a wait tries again every millisecond at most until the deadline; only the thread
    whose turn it is in its process ever waits here. A lock of a process that dies is let go
    by the kernel."""

    def __init__(self, path: str):
        self._path = path
        self._fd: int | None = None

    def acquire(self, deadline: float) -> None:
        fd = self._open()
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(pause)
                pause = min(pause * 2, FILE_LOCK_POLL_S)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:  # a read-only folder or mount, most likely
                raise DatabaseUnavailable(f"the database cannot be written: the writer lock file beside it "
                                          f"cannot be opened ({exc.strerror})", cause="cannot_open") from None
        return self._fd


class SqliteWriterQueue:
    """One database file's writers in this process: the turn among threads, the lock among processes,
    and the open group of writes (``groups.WriteGroups``), which only the thread whose turn it is
    touches."""

    def __init__(self, lock_path: str):
        from tiddly.storage.groups import (
            WriteGroups,  # groups builds on the turn and lock defined here
        )
        self.threads = _Turn()
        self.processes = _FileLock(lock_path)
        self.groups = WriteGroups(self)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This thread's turn alone, the lock file held, no group open (the schema's preparation;
        a write scope opened inside another in the same thread passes, and then waits on SQLite's own
        lock, as before)."""
        nested = self.threads.held_here()
        deadline = time.monotonic() + engines.SQLITE_BUSY_TIMEOUT_S
        self.threads.take(deadline)
        try:
            if nested:
                yield
                return
            self.groups.close_open_group()  # handed the turn by a group that stayed open for it
            self.processes.acquire(deadline)
            try:
                yield
            finally:
                self.processes.release()
        finally:
            self.threads.give()

    def session(self, engine: Engine, begin: str):
        """The write scope with group commit (``groups.WriteGroups.session``); None for a scope opened
        inside another one in the same thread, which takes the plain path."""
        if self.threads.held_here():
            return None
        return self.groups.session(engine, begin)


# One queue per database file and process. A forked child (a granian or gunicorn worker) starts with
# none: the parent's open lock file would be shared with it, and shared is not exclusive.
_SQLITE_WRITERS: dict[str, SqliteWriterQueue] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()
os.register_at_fork(after_in_child=_SQLITE_WRITERS.clear)


def sqlite_writer_queue(engine: Engine, home: StateHome | None) -> SqliteWriterQueue | None:
    path = home.sidecar if home else engine.url.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None  # an in-memory database has one connection's worth of writers anyway
    lock_path = str(Path(path).resolve()) + ".writer-lock"
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(lock_path, SqliteWriterQueue(lock_path))
