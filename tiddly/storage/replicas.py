"""Read replicas: which PostgreSQL standby may answer a read, decided with no round trip.

A thread in each process probes the primary and every replica in the background, every
``PROBE_INTERVAL_S``: the primary's WAL position, then each replica's replay position. A request
then chooses from what the last probe saw, in memory. A replica is eligible when it answered
the last probe, is still replaying (``pg_is_in_recovery()``), is within the lag bound, and has
replayed the asking writer's last write (read-your-writes, ``Writer``).

Lag is measured against the primary's own positions, not a clock on the replica: the probe
keeps the primary's recent positions with the time each was seen, and a replica's lag is how
long ago the newest of them it has replayed was seen (0 when it has replayed the latest). So
an idle primary means no lag, and the figure is an upper bound, coarse by one probe interval.
"""
from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, MetaData, String, Table, bindparam, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from tiddly.storage.engines import engine_url, make_engines, pooled

log = logging.getLogger("tiddly")

PROBE_INTERVAL_S = 0.5
DEFAULT_MAX_LAG_S = 5.0
# Positions are PostgreSQL LSNs as plain integers (bytes into the WAL), compared in Python.
PRIMARY_POSITION = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint"
REPLICA_POSITION = "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"

# Where each writer's last write position is kept: on the primary, in an UNLOGGED table (no WAL,
# no flush to wait for; read only on the primary, by the key check; emptied by a crash, which
# costs read-your-writes for the writes just before it, nothing else). Beside Tiddly's own tables.
WRITE_POSITIONS = Table("tiddly_write_positions", MetaData(),
                        Column("writer", String(128), primary_key=True),
                        Column("lsn", BigInteger, nullable=False), prefixes=["UNLOGGED"])
LAST_WRITE = (select(WRITE_POSITIONS.c.lsn).where(WRITE_POSITIONS.c.writer == bindparam("tiddly_writer"))
              .scalar_subquery())


@dataclass(frozen=True)
class Writer:
    """Who asks, for read-your-writes: the name its writes are recorded under (an API key's or
    login token's hash, ``open``), and the position of its last write as the key check read it
    on the primary (None: none recorded, or not known)."""
    name: str
    last_write: int | None = None


def record_write_sql(schema: str | None) -> str:
    """After a write commits: this writer's position is at least the primary's WAL insert
    position now, which is past the commit record (the flush position may not be, with
    synchronous_commit off). GREATEST: two writes by one writer may record out of order."""
    table = f"{schema}.{WRITE_POSITIONS.name}" if schema else WRITE_POSITIONS.name
    return (f"INSERT INTO {table} (writer, lsn) "
            f"VALUES (%(writer)s, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint) "
            f"ON CONFLICT (writer) DO UPDATE SET lsn = GREATEST({table}.lsn, EXCLUDED.lsn)")


@dataclass(frozen=True)
class ReplicaState:
    up: bool = False
    replayed: int = -1          # the replay position at the last probe
    lag_s: float = float("inf")
    reason: str = "not probed yet"


class Replica:
    def __init__(self, url: str, statement_timeout_ms: int, home):
        self.url = engine_url(url)
        self.pooled = pooled(self.url)
        _, self.engine = make_engines(url, statement_timeout_ms, home, replica=True)
        self.state = ReplicaState()

    @property
    def name(self) -> str:
        return self.url.difference_update_query(["pooler"]).render_as_string(hide_password=True)

    def mark_down(self, reason: str) -> None:
        """A request found it down: skip it until the next probe finds it up."""
        self.state = ReplicaState(False, self.state.replayed, float("inf"), reason)


class ReplicaSet:
    """The replicas of one primary, the background probe, and the choice of one for a read."""

    def __init__(self, primary: Engine, urls: list[str], max_lag_s: float, statement_timeout_ms: int, home):
        self.primary = primary
        self.max_lag_s = max_lag_s
        self.replicas = [Replica(url, statement_timeout_ms, home) for url in urls]
        self.primary_up = True       # until a probe or a request finds otherwise
        self.primary_reason = ""
        self._seen: collections.deque[tuple[float, int]] = collections.deque()  # (time, primary position)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._start_lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    # -- the choice, on every read: memory only ---------------------------------------------

    def choose(self, writer: Writer | None) -> Replica | None:
        """A replica for a read by ``writer`` (None: the primary must answer)."""
        self._ensure_probing()
        needed = writer.last_write if writer is not None else None
        if self.primary_up:
            eligible = [r for r in self.replicas if r.state.up and r.state.lag_s <= self.max_lag_s
                        and (needed is None or r.state.replayed >= needed)]
        else:  # reads are answered by whatever replica is up, however far behind: there is nothing newer
            eligible = [r for r in self.replicas if r.state.up]
        if not eligible:
            return None
        return eligible[0] if len(eligible) == 1 else random.choice(eligible)

    def any_up(self) -> Replica | None:
        """A replica that answered its last probe, for when the primary does not answer."""
        self._ensure_probing()
        up = [r for r in self.replicas if r.state.up]
        return max(up, key=lambda r: r.state.replayed) if up else None

    def mark_primary_down(self, reason: str) -> None:
        self.primary_up, self.primary_reason = False, reason

    def describe(self) -> dict:
        """For /-/health: the primary's and each replica's state as last seen."""
        self._ensure_probing()
        return {"primary": "up" if self.primary_up else "down",
                "replicas": [{"url": r.name, "state": "up" if r.state.up else "down",
                              "lag_s": None if r.state.lag_s == float("inf") else round(r.state.lag_s, 3),
                              **({"reason": r.state.reason} if r.state.reason else {})}
                             for r in self.replicas]}

    # -- the probe, in the background ----------------------------------------------------

    def _ensure_probing(self) -> None:
        """Start the probe in this process on first use (a forked worker starts its own)."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self._seen = collections.deque()
            self.probe()  # the first choice already knows where things stand
            self._thread = threading.Thread(target=self._probe_forever, name="tiddly-replica-probe", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _probe_forever(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL_S):
            try:
                self.probe()
            except Exception:  # noqa: BLE001 - the probe must outlive any surprise; the next one tries again
                log.exception("the replica probe failed")

    def probe(self) -> None:
        now = time.monotonic()
        self._probe_primary(now)
        for replica in self.replicas:
            replica.state = self._probe_replica(replica, now)

    def _probe_primary(self, now: float) -> None:
        try:
            with self.primary.connect() as connection:
                position = connection.exec_driver_sql(PRIMARY_POSITION).scalar()
        except DBAPIError as exc:
            self.mark_primary_down(_first_line(exc))
            return
        self.primary_up, self.primary_reason = True, ""
        self._seen.append((now, position))
        horizon = now - self.max_lag_s - 2 * PROBE_INTERVAL_S
        while len(self._seen) > 2 and self._seen[1][0] < horizon:
            self._seen.popleft()

    def _probe_replica(self, replica: Replica, now: float) -> ReplicaState:
        try:
            with replica.engine.connect() as connection:
                recovering, replayed = connection.exec_driver_sql(REPLICA_POSITION).one()
        except DBAPIError as exc:
            return ReplicaState(False, replica.state.replayed, float("inf"), _first_line(exc))
        if not recovering:
            return ReplicaState(False, -1, float("inf"), "not a standby (promoted?): not read from")
        return ReplicaState(True, replayed, self._lag(replayed, now), "")

    def _lag(self, replayed: int, now: float) -> float:
        """How long ago the newest primary position this replica has replayed was seen."""
        for seen_at, position in reversed(self._seen):
            if replayed >= position:
                return 0.0 if seen_at == self._seen[-1][0] else now - seen_at
        return float("inf") if self._seen else 0.0

    def dispose(self) -> None:
        self._stop.set()
        for replica in self.replicas:
            replica.engine.dispose()


def _first_line(exc: DBAPIError) -> str:
    return (str(exc.orig).strip().splitlines() or [exc.__class__.__name__])[0]
