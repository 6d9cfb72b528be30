"""The change log: every committed row change, in commit order (DESIGN section 11).

Two tables of Tiddly's own, created beside its other state. ``tiddly_changes`` holds one row
per changed row: its ``position``, the table's name, the op, the key and the row as committed
(JSON text), and the time. ``tiddly_change_clock`` is one row: the last position handed out,
and the last position pruned.

Why positions are in commit order: a transaction takes its positions from the clock row as
its last statement before COMMIT (``append``), and that UPDATE holds the clock row's lock until
the commit. The next writer waits for it, so a position is only handed out once every smaller
one is committed or rolled back: a reader that sees position ``p`` has already seen everything
below ``p``, and ``position > after`` resumes with nothing twice and nothing skipped, also when
two transactions that began in one order commit in the other. The cost: the commits of writes
that change rows queue for a moment on one row (the triggers of ``tiddly changes enable`` take
the same lock, for the rest of the outside transaction). A rolled-back transaction leaves a
gap in the numbers, never an event.

``tiddly_change_tables`` names the tables whose triggers write the log themselves (``tiddly
changes enable``): Tiddly's own writes to them are not logged twice.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

METADATA = MetaData()
_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}
_TIME = DateTime().with_variant(DATETIME(fsp=6), "mysql", "mariadb")
_TEXT = Text().with_variant(LONGTEXT(), "mysql", "mariadb")

CHANGES = Table(
    "tiddly_changes", METADATA,
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("table_name", String(255), nullable=False),
    Column("op", String(10), nullable=False),
    Column("row_key", _TEXT, nullable=False),
    Column("row_data", _TEXT),
    Column("at", _TIME, nullable=False),
    Index("tiddly_changes_at", "at"),
    **_ARGS,
)
CLOCK = Table(
    "tiddly_change_clock", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    Column("pruned", BigInteger, nullable=False),
    **_ARGS,
)
TRIGGERED = Table(
    "tiddly_change_tables", METADATA,
    Column("table_name", String(255), primary_key=True),
    Column("enabled_at", _TIME, nullable=False),
    **_ARGS,
)
TABLES = [CHANGES, CLOCK, TRIGGERED]


@dataclass(frozen=True)
class Entry:
    """One change as the log stores it: JSON text for the key and the row (None for a delete)."""
    table: str
    op: str
    key: str
    row: str | None


@dataclass(frozen=True)
class Logged:
    position: int
    table: str
    op: str
    key: str
    row: str | None
    at: dt.datetime


def create(db) -> None:
    """The log's tables where Tiddly's state lives, and the clock's one row."""
    db.create_state(METADATA, TABLES)
    try:
        with db.session(write=True) as session:
            if session.execute(select(CLOCK.c.id)).first() is None:
                session.execute(insert(CLOCK).values(id=1, position=0, pruned=0))
    except IntegrityError:  # another worker made it first
        pass


def exists(db) -> bool:
    with db.engine.connect() as connection:
        return inspect(connection).has_table(CLOCK.name, schema=_schema(db))


def _schema(db) -> str | None:
    return db.state_home.schema if db.state_home else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def triggered_tables(session: Session) -> set[str]:
    return set(session.scalars(select(TRIGGERED.c.table_name)))


def append(session: Session, entries: list[Entry]) -> None:
    """Log ``entries`` in the caller's transaction, as its last statements (see the module's note)."""
    if not entries:
        return
    session.execute(update(CLOCK).where(CLOCK.c.id == 1).values(position=CLOCK.c.position + len(entries)))
    last = session.execute(select(CLOCK.c.position).where(CLOCK.c.id == 1)).scalar_one()
    at = now()
    first = last - len(entries) + 1
    session.execute(insert(CHANGES), [
        {"position": first + i, "table_name": e.table, "op": e.op, "row_key": e.key, "row_data": e.row, "at": at}
        for i, e in enumerate(entries)])


def latest(session: Session) -> int:
    """The last committed position (0: none yet)."""
    return session.execute(select(func.coalesce(func.max(CHANGES.c.position), 0))).scalar_one()


def clock(session: Session) -> tuple[int, int]:
    """The last position handed out and the last one pruned."""
    row = session.execute(select(CLOCK.c.position, CLOCK.c.pruned).where(CLOCK.c.id == 1)).first()
    return (row[0], row[1]) if row is not None else (0, 0)


def after(session: Session, position: int, limit: int, tables: Iterable[str] | None = None) -> list[Logged]:
    """The changes after ``position``, in order (at most ``limit``)."""
    statement = select(CHANGES).where(CHANGES.c.position > position).order_by(CHANGES.c.position).limit(limit)
    if tables is not None:
        statement = statement.where(CHANGES.c.table_name.in_(sorted(tables)))
    return [Logged(r.position, r.table_name, r.op, r.row_key, r.row_data, r.at) for r in session.execute(statement)]


def prune(session: Session, older_than: dt.datetime) -> int:
    """Delete the changes logged before ``older_than``; the last position pruned."""
    through = session.execute(select(func.max(CHANGES.c.position)).where(CHANGES.c.at < older_than)).scalar()
    if through is None:
        return 0
    session.execute(delete(CHANGES).where(CHANGES.c.position <= through))
    session.execute(update(CLOCK).where(CLOCK.c.id == 1, CLOCK.c.pruned < through).values(pruned=through))
    return through
