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
    column,
    delete,
    exists as sql_exists,
    func,
    insert,
    inspect,
    literal,
    select,
    true,
    update,
    values,
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


def excludes_triggered(session: Session) -> bool:
    """Whether ``append`` itself leaves out the tables whose triggers log them (PostgreSQL: in its one statement)."""
    return session.get_bind().dialect.name == "postgresql"


def append(session: Session, entries: list[Entry]) -> None:
    """Log ``entries`` in the caller's transaction, as its last statements (see the module's note)."""
    if not entries:
        return
    if excludes_triggered(session):
        appended = _appended(entries, now())
        if session.execute(appended).rowcount == 0 and _no_clock(session):  # the database was down at start
            session.execute(insert(CLOCK).values(id=1, position=0, pruned=0))
            session.execute(appended)
        return
    advance = update(CLOCK).where(CLOCK.c.id == 1).values(position=CLOCK.c.position + len(entries))
    if session.execute(advance).rowcount == 0:  # the clock's row was never made (the database was down at start)
        session.execute(insert(CLOCK).values(id=1, position=0, pruned=0))
        session.execute(advance)
    last = session.execute(select(CLOCK.c.position).where(CLOCK.c.id == 1)).scalar_one()
    at = now()
    first = last - len(entries) + 1
    session.execute(insert(CHANGES), [
        {"position": first + i, "table_name": e.table, "op": e.op, "row_key": e.key, "row_data": e.row, "at": at}
        for i, e in enumerate(entries)])


def _no_clock(session: Session) -> bool:
    return session.execute(select(CLOCK.c.id).where(CLOCK.c.id == 1)).first() is None


def _appended(entries: list[Entry], at: dt.datetime):
    """PostgreSQL: one statement, one round trip. It takes the positions from the clock (an
    UPDATE ... RETURNING in a WITH, whose lock holds to the commit) and inserts every entry of a
    table no trigger logs; a left-out entry leaves a gap in the numbers, as a rollback does."""
    n = len(entries)
    taken = update(CLOCK).where(CLOCK.c.id == 1).values(position=CLOCK.c.position + n) \
        .returning(CLOCK.c.position).cte("taken")
    rows = values(column("i", Integer), column("table_name", String), column("op", String),
                  column("row_key", Text), column("row_data", Text), name="entries") \
        .data([(i, e.table, e.op, e.key, e.row) for i, e in enumerate(entries)])
    chosen = select(taken.c.position - n + 1 + rows.c.i, rows.c.table_name, rows.c.op, rows.c.row_key,
                    rows.c.row_data, literal(at, _TIME)) \
        .select_from(taken.join(rows, true())) \
        .where(~sql_exists().where(TRIGGERED.c.table_name == rows.c.table_name))
    return insert(CHANGES).add_cte(taken).from_select(
        ["position", "table_name", "op", "row_key", "row_data", "at"], chosen)


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


# -- triggers: writes by other programs (`tiddly changes enable`) ----------------------------

@dataclass(frozen=True)
class Watched:
    """A table to log with triggers, by names already checked against the registry: the name
    events carry, its table in SQL, its key columns and the columns an event may show."""
    name: str
    table: Table
    key: tuple[str, ...]
    columns: tuple[str, ...]


def trigger_name(name: str, suffix: str = "") -> str:
    """The triggers' own name: fixed by the table's, made of no character of it."""
    import hashlib  # noqa: PLC0415
    return f"tiddly_changes_{hashlib.sha256(name.encode()).hexdigest()[:12]}{suffix}"


def _ops(dialect: str) -> tuple[tuple[str, str], ...]:
    # SQLite and MariaDB have a trigger an event; PostgreSQL's one trigger takes all three.
    return (("", "INSERT OR UPDATE OR DELETE"),) if dialect == "postgresql" else \
        (("_i", "INSERT"), ("_u", "UPDATE"), ("_d", "DELETE"))


def enable(db, watched: list[Watched]) -> None:
    """Triggers that log every write to these tables, whoever makes it, and a note of them (so
    Tiddly's own writes to them are not logged twice); in one transaction where DDL is one."""
    dialect = db.dialect_name
    if dialect == "sqlite" and db.state_home and db.state_home.sidecar:
        raise ValueError("on SQLite, triggers cannot write to Tiddly's state apart (--reflect keeps it in "
                         f"{db.state_home.place}); the change log sees Tiddly's own writes only")
    with db.engine.begin() as connection:
        for table in watched:
            for statement in _drop(connection, table) + _create(connection, table, _schema(db)):
                connection.exec_driver_sql(statement)
            connection.execute(delete(TRIGGERED).where(TRIGGERED.c.table_name == table.name))
            connection.execute(insert(TRIGGERED).values(table_name=table.name, enabled_at=now()))


def disable(db, watched: list[Watched]) -> None:
    """Drop exactly what ``enable`` made for these tables."""
    with db.engine.begin() as connection:
        for table in watched:
            for statement in _drop(connection, table):
                connection.exec_driver_sql(statement)
            connection.execute(delete(TRIGGERED).where(TRIGGERED.c.table_name == table.name))


def enabled(db) -> list[str]:
    with db.session(latest=True) as session:
        return sorted(triggered_tables(session))


def _q(connection):
    return connection.dialect.identifier_preparer


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _log_name(connection, db_schema: str | None, table: Table) -> str:
    quoted = _q(connection).quote(table.name)
    return f"{_q(connection).quote(db_schema)}.{quoted}" if db_schema else quoted


def _drop(connection, table: Watched) -> list[str]:
    q, dialect = _q(connection), connection.dialect.name
    target = q.format_table(table.table)
    if dialect == "postgresql":
        schema = _function_schema(connection, table)
        return [f"DROP TRIGGER IF EXISTS {q.quote(trigger_name(table.name))} ON {target}",
                f"DROP FUNCTION IF EXISTS {schema}{q.quote(trigger_name(table.name))}()"]
    return [f"DROP TRIGGER IF EXISTS {q.quote(trigger_name(table.name, suffix))}" for suffix, _ in _ops(dialect)]


def _function_schema(connection, table: Watched) -> str:
    return f"{_q(connection).quote(table.table.schema)}." if table.table.schema else ""


def _json_object(connection, pairs: list[str], prefix: str) -> str:
    q = _q(connection)
    function = "json_build_object" if connection.dialect.name == "postgresql" else \
        "json_object" if connection.dialect.name == "sqlite" else "JSON_OBJECT"
    return f"{function}({', '.join(f'{_literal(c)}, {prefix}.{q.quote(c)}' for c in pairs)})"


def _create(connection, table: Watched, home: str | None) -> list[str]:
    """The triggers' DDL: text, as DDL is, made only of names the registry knows, each quoted
    by the dialect, and of the table's name as a quoted literal."""
    dialect, q = connection.dialect.name, _q(connection)
    changes, clock_table = _log_name(connection, home, CHANGES), _log_name(connection, home, CLOCK)
    target = q.format_table(table.table)
    name = _literal(table.name)
    if dialect == "postgresql":
        function = f"{_function_schema(connection, table)}{q.quote(trigger_name(table.name))}"
        body = (
            "DECLARE p bigint; k text; r text;\nBEGIN\n"
            f"  UPDATE {clock_table} SET position = position + 1 WHERE id = 1 RETURNING position INTO p;\n"
            f"  IF TG_OP = 'DELETE' THEN k := {_json_object(connection, list(table.key), 'OLD')}::text; r := NULL;\n"
            f"  ELSE k := {_json_object(connection, list(table.key), 'NEW')}::text;"
            f" r := {_json_object(connection, list(table.columns), 'NEW')}::text; END IF;\n"
            f"  INSERT INTO {changes} (position, table_name, op, row_key, row_data, at)"
            f" VALUES (p, {name}, lower(TG_OP), k, r, clock_timestamp() AT TIME ZONE 'UTC');\n"
            "  RETURN NULL;\nEND")
        return [f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {_literal(body)}",
                f"CREATE TRIGGER {q.quote(trigger_name(table.name))} AFTER INSERT OR UPDATE OR DELETE ON {target} "
                f"FOR EACH ROW EXECUTE FUNCTION {function}()"]
    statements = []
    for suffix, event in _ops(dialect):
        row = "OLD" if event == "DELETE" else "NEW"
        key = _json_object(connection, list(table.key), row)
        data = "NULL" if event == "DELETE" else _json_object(connection, list(table.columns), row)
        op = _literal(event.lower())
        trigger = q.quote(trigger_name(table.name, suffix))
        if dialect == "sqlite":
            statements.append(
                f"CREATE TRIGGER {trigger} AFTER {event} ON {target} BEGIN "
                f"UPDATE {clock_table} SET position = position + 1 WHERE id = 1; "
                f"INSERT INTO {changes} (position, table_name, op, row_key, row_data, at) "
                f"SELECT position, {name}, {op}, {key}, {data}, strftime('%Y-%m-%d %H:%M:%f000', 'now') "
                f"FROM {clock_table} WHERE id = 1; END")
        else:
            statements.append(
                f"CREATE TRIGGER {trigger} AFTER {event} ON {target} FOR EACH ROW BEGIN "
                f"DECLARE p BIGINT; "
                f"UPDATE {clock_table} SET position = position + 1 WHERE id = 1; "
                f"SELECT position INTO p FROM {clock_table} WHERE id = 1; "
                f"INSERT INTO {changes} (position, table_name, op, row_key, row_data, at) "
                f"VALUES (p, {name}, {op}, {key}, {data}, UTC_TIMESTAMP(6)); END")
    return statements
