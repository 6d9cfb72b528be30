"""The change feed's services: what a write logs, and one poller per worker process.

``Feed.record`` is the executor's in-transaction hook: every row a write changed, read back
in the write's own transaction (so the row is the one this change committed), logged with
``storage.changes.append`` (positions in commit order: see there). A table whose triggers log
its writes (``tiddly changes enable``) is skipped: the trigger logs Tiddly's writes too. An
operation's ``"call"`` changes (a stored function ran) are not logged: which rows a function
wrote only the database knows, so only triggers see them.

``Feed`` also polls the log, in one thread per worker process: woken at once by the
after-commit hook (this worker's writes), and every ``changes_poll_s`` (other workers, other
instances, triggers). Each batch of new changes goes, in one call, to every ``Sink``
attached (the web edge attaches one per event loop), with the names of the keys revoked
since, and a keep-alive tick every ``changes_keepalive_s``. It prunes what is older than
``changes_retention_s`` once a minute.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from tiddly import jsonio
from tiddly.errors import ApiError, BadQuery, Gone, Unsupported
from tiddly.models import ApiKey
from tiddly.registry import Registry, TableSpec
from tiddly.services.plan import AllOf, AnyOf, Change, Compare, Condition, Not
from tiddly.storage import changes as log_table

log = logging.getLogger("tiddly.changes")

BATCH = 1000
PRUNE_EVERY_S = 60.0
_KEY_CHUNK = 500
LOOK_AGAIN_S = 5.0  # how often a worker that found no change log looks for it again


@dataclass(frozen=True)
class Logged:
    """A logged change, decoded once for every listener of the process."""
    position: int
    table: str
    op: str
    key: dict
    row: dict        # every readable column after the change; for a delete, the key
    at: str          # ISO 8601 UTC, milliseconds


class Sink(Protocol):
    def deliver(self, batch: list[Logged], revoked: frozenset[str], tick: bool) -> bool:
        """Hand on a batch (without blocking); False: the sink is gone, detach it."""

    def key_names(self) -> set[str]:
        """The names of the API keys its listeners listen with (``OPEN_MODE`` for open mode's)."""


OPEN_MODE = "\x00open mode"  # beside key names: no key can be called this; ended by the first active key


class Feed:
    def __init__(self, db, registry: Registry, config):
        self.db, self.registry, self.config = db, registry, config
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.frontier = 0
        self._logging = False  # the log's tables exist (once seen, for good)
        self._looked_at = float("-inf")  # when they were last looked for

    # -- the executor's hooks -------------------------------------------------------------

    def record(self, session: Session, changes: list[Change]) -> None:
        if not self._log_exists():
            return
        changed = [c for c in changes if c.op != "call" and c.table in self.registry.tables]
        if not changed:
            return
        if not log_table.excludes_triggered(session):
            triggered = log_table.triggered_tables(session)
            changed = [c for c in changed if c.table not in triggered]
        rows = _rows_after(session, self.registry, [c for c in changed if c.row is None])
        log_table.append(session, [self._entry(c, rows) for c in changed])

    def woken(self, changes: list[Change]) -> None:
        self._wake.set()

    def _entry(self, change: Change, rows: dict) -> log_table.Entry:
        spec = self.registry.tables[change.table]
        key = {c.name: v for c, v in zip(spec.primary_key, change.key)}
        row = None if change.op == "delete" else change.row if change.row is not None else \
            rows.get((change.table, tuple(change.key)))
        return log_table.Entry(change.table, change.op, _text(key), _text(row) if row is not None else None)

    def _log_exists(self) -> bool:
        # Missing at start (the database was down): looked for again now and then, not on every write.
        if not self._logging and time.monotonic() - self._looked_at > LOOK_AGAIN_S:
            with self._lock:  # the writes that race here all wait for the one look
                if not self._logging and time.monotonic() - self._looked_at > LOOK_AGAIN_S:
                    self._logging = log_table.exists(self.db)
                    self._looked_at = time.monotonic()
        return self._logging

    # -- listening ------------------------------------------------------------------------

    def start(self) -> int:
        """Start the poller if it is not running (blocking: through the handler's ``call``);
        the last position it has seen."""
        with self._lock:
            if self._thread is None:
                with self.db.session(latest=True) as session:
                    self.frontier = log_table.latest(session)
                self._thread = threading.Thread(target=self._run, daemon=True, name="tiddly-changes")
                self._thread.start()
            return self.frontier

    def attach(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def detach(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def check_resume(self, position: int) -> None:
        """A 410 when what follows ``position`` is pruned; a 400 for a position never handed out."""
        with self.db.session(latest=True) as session:
            issued, pruned = log_table.clock(session)
        if position < pruned:
            raise Gone(f"position {position} is older than the change log keeps "
                       f"(changes_retention_s = {self.config.changes_retention_s} seconds); "
                       "read the tables again and listen from now on", retention_s=self.config.changes_retention_s)
        if position > issued:
            raise BadQuery(f"position {position} was never handed out by this database's change feed")

    def backlog(self, position: int, tables: Iterable[str]) -> list[Logged]:
        """Up to ``BATCH`` logged changes to ``tables`` after ``position`` (blocking)."""
        with self.db.session(latest=True) as session:
            return [_decoded(r) for r in log_table.after(session, position, BATCH, tables)]

    # -- the poller -----------------------------------------------------------------------

    def _run(self) -> None:
        last_tick = last_prune = time.monotonic()
        while True:
            self._wake.wait(self.config.changes_poll_s)
            self._wake.clear()
            try:
                batch = self._poll()
                now = time.monotonic()
                tick = now - last_tick >= self.config.changes_keepalive_s
                if batch or tick:
                    last_tick = now if tick else last_tick
                    self._hand_on(batch, tick)
                if now - last_prune >= min(PRUNE_EVERY_S, self.config.changes_retention_s):
                    last_prune = now
                    self._prune()
            except Exception:  # noqa: BLE001 (a database that is down: try again at the next poll)
                log.exception("the change feed's poller failed; it polls again")
                time.sleep(self.config.changes_poll_s)

    def _poll(self) -> list[Logged]:
        batch: list[Logged] = []
        while True:
            with self.db.session(latest=True) as session:
                rows = log_table.after(session, self.frontier, BATCH)
            batch += [_decoded(r) for r in rows]
            if rows:
                self.frontier = rows[-1].position
            if len(rows) < BATCH:
                return batch

    def _hand_on(self, batch: list[Logged], tick: bool) -> None:
        with self._lock:
            sinks = list(self._sinks)
        revoked = self._revoked(set().union(*(s.key_names() for s in sinks))) if sinks else frozenset()
        for sink in sinks:
            if not sink.deliver(batch, revoked, tick):
                self.detach(sink)

    def _revoked(self, names: set[str]) -> frozenset[str]:
        """Of the key names given, those with no active key any more; ``OPEN_MODE`` once a key exists."""
        if not names:
            return frozenset()
        keys = ApiKey.__table__.c
        with self.db.session(latest=True) as session:
            active = set(session.scalars(select(keys.name).where(keys.name.in_(sorted(names - {OPEN_MODE})),
                                                                  keys.revoked_at.is_(None))))
            if OPEN_MODE in names and session.execute(select(keys.name).where(keys.revoked_at.is_(None))
                                                      .limit(1)).first() is None:
                active.add(OPEN_MODE)
        return frozenset(names - active)

    def _prune(self) -> None:
        cutoff = log_table.now() - dt.timedelta(seconds=self.config.changes_retention_s)
        with self.db.session(write=True) as session:
            log_table.prune(session, cutoff)


# -- rows ----------------------------------------------------------------------------------

def _rows_after(session: Session, registry: Registry, changes: list[Change]) -> dict:
    """The readable columns of every inserted or updated row, as this transaction left them."""
    wanted: dict[str, list[tuple]] = {}
    for change in changes:
        if change.op != "delete":
            wanted.setdefault(change.table, []).append(tuple(change.key))
    rows = {}
    for name, keys in wanted.items():
        spec = registry.tables[name]
        for start in range(0, len(keys), _KEY_CHUNK):
            for row in session.execute(_select_rows(spec, keys[start:start + _KEY_CHUNK])).mappings():
                rows[(name, tuple(row[c.name] for c in spec.primary_key))] = \
                    {c.name: row[c.name] for c in spec.readable}
    return rows


def _select_rows(spec: TableSpec, keys: list[tuple]):
    from sqlalchemy import and_, or_, tuple_  # noqa: PLC0415 (only here)
    pk = [c.column for c in spec.primary_key]
    columns = {c.name: c.column for c in (*spec.readable, *spec.primary_key)}
    statement = select(*(col.label(name) for name, col in columns.items()))
    if len(pk) == 1:
        return statement.where(pk[0].in_([k[0] for k in keys]))
    return statement.where(or_(*(and_(*(col == v for col, v in zip(pk, key))) for key in keys))) \
        if len(keys) < 50 else statement.where(tuple_(*pk).in_(keys))


def _text(value: Any) -> str:
    return jsonio.dumps(value).decode()


def _decoded(row: log_table.Logged) -> Logged:
    key = jsonio.loads(row.key)
    data = jsonio.loads(row.row) if row.row is not None else key
    return Logged(row.position, row.table, row.op, key, data, iso(row.at))


def iso(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


# -- where, in Python ----------------------------------------------------------------------

SUPPORTED = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "like", "ilike", "between", "is",
             "match", "imatch")


def check_condition(condition: Condition | None) -> None:
    """A 400 for an operator a change's row cannot be matched with here (text search, ranges)."""
    if condition is None:
        return
    if isinstance(condition, (AllOf, AnyOf)):
        for item in condition.items:
            check_condition(item)
    elif isinstance(condition, Not):
        check_condition(condition.item)
    elif condition.op not in SUPPORTED or not hasattr(condition.column, "column"):
        raise Unsupported(f"the change feed's where takes {', '.join(SUPPORTED)} on columns; "
                          f"not {condition.op!r}")


def condition_columns(condition: Condition | None) -> set[str]:
    if condition is None:
        return set()
    if isinstance(condition, (AllOf, AnyOf)):
        return set().union(*(condition_columns(item) for item in condition.items))
    if isinstance(condition, Not):
        return condition_columns(condition.item)
    return {condition.column.name}


def matches(condition: Condition | None, row: dict) -> bool:
    """Whether a change's row (JSON values) satisfies ``condition``. A NULL compares as SQL's:
    never equal, never ordered."""
    if condition is None:
        return True
    if isinstance(condition, AllOf):
        return all(matches(item, row) for item in condition.items)
    if isinstance(condition, AnyOf):
        return any(matches(item, row) for item in condition.items)
    if isinstance(condition, Not):
        return not matches(condition.item, row)
    return _compare(condition, row.get(condition.column.name))


def _json(value: Any) -> Any:
    return jsonio.loads(jsonio.dumps(value))


def _compare(c: Compare, value: Any) -> bool:
    op, operand = c.op, c.value
    if op == "is":
        return value is operand if operand is None else value == operand
    if op in ("eq", "ne") and operand is None:
        return (value is None) == (op == "eq")
    if value is None:
        return False
    try:
        return _COMPARE[op](value, _json(operand))
    except TypeError:  # a JSON value of another type than the operand's: no match
        return False


def _like(pattern: str, flags: int = 0) -> re.Pattern:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL | flags)


_COMPARE = {
    "eq": lambda v, o: v == o, "ne": lambda v, o: v != o,
    "lt": lambda v, o: v < o, "lte": lambda v, o: v <= o, "gt": lambda v, o: v > o, "gte": lambda v, o: v >= o,
    "in": lambda v, o: v in o, "nin": lambda v, o: v not in o,
    "between": lambda v, o: o[0] <= v <= o[1],
    "like": lambda v, o: _like(o).fullmatch(str(v)) is not None,
    "ilike": lambda v, o: _like(o, re.IGNORECASE).fullmatch(str(v)) is not None,
    "match": lambda v, o: re.search(o, str(v)) is not None,
    "imatch": lambda v, o: re.search(o, str(v), re.IGNORECASE) is not None,
}

__all__ = ["Feed", "Logged", "Sink", "matches", "check_condition", "iso", "ApiError"]


# -- outside writes: triggers ----------------------------------------------------------------

def watched(registry: Registry, names: list[str]) -> list[log_table.Watched]:
    """The tables named, checked against the registry (an unknown name is a 404), as the
    triggers need them: every name in their DDL comes from here."""
    tables = []
    for name in dict.fromkeys(names):
        spec = registry.get(name)
        tables.append(log_table.Watched(name, spec.table, tuple(c.column.name for c in spec.primary_key),
                                        tuple(c.column.name for c in spec.readable)))
    return tables
