"""Upsert by a unique column set: ``PUT /<table>?on=email`` with one object or an array.

Each row is inserted, or, when a row with the same ``on`` values exists, that
row's given columns are updated (columns the object leaves out keep their
values). One INSERT ... ON CONFLICT DO UPDATE (PostgreSQL, SQLite) or
INSERT ... ON DUPLICATE KEY UPDATE (MariaDB/MySQL) per request, split only to
stay under the databases' limit on bound parameters. ``on`` must be exactly the
columns of the primary key or of a unique constraint. A clash on another unique
key is a 409 on every database: PostgreSQL and SQLite raise it, while MariaDB's
ON DUPLICATE KEY reacts to a clash on *any* unique key and updates that other
row, which leaves no row with the ``on`` values: the read back finds none, says
409, and the request rolls back.
The PostgREST dialect's ``resolution=`` runs the same; ``ignore`` keeps an existing row as
it is (DO NOTHING) and names only the rows it inserted. Takes a Session, never commits.
"""
from __future__ import annotations

from sqlalchemy import (
    Index,
    PrimaryKeyConstraint,
    UniqueConstraint,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from tiddly.errors import (
    ApiError,
    BadQuery,
    BadValue,
    Conflict,
    ForeignKeyViolation,
    MissingColumn,
    UniqueViolation,
)
from tiddly.registry import ColumnSpec, TableSpec
from tiddly.services.crud import at_index, insert_values
from tiddly.storage import column_default

MAX_PARAMETERS = 30_000  # SQLite allows 32,766 bound parameters per statement, PostgreSQL 65,535
_DUPLICATE_KEY, _FOREIGN_KEY = 1062, 1452  # MariaDB's warnings after INSERT IGNORE
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert, "mysql": mysql.insert,
            "mariadb": mysql.insert}


def unique_keys(spec: TableSpec) -> list[tuple[str, ...]]:
    """The column sets that identify one row: the primary key, unique constraints and unique indexes."""
    keys = []
    for item in list(spec.table.constraints) + list(spec.table.indexes):
        unique = isinstance(item, (PrimaryKeyConstraint, UniqueConstraint)) or (
            isinstance(item, Index) and item.unique)
        names = tuple(c.name for c in item.columns)
        if unique and names and names not in keys:
            keys.append(names)
    primary = tuple(c.name for c in spec.primary_key)
    # table.constraints is a set: list the primary key first, then the rest by name, the same every time
    return sorted(keys, key=lambda names: (names != primary, names))


def unique_key(spec: TableSpec, names: list[str]) -> tuple[ColumnSpec, ...]:
    """The columns ``names`` as a unique key of the table (the primary key, a unique constraint
    or index), or a 400 listing the table's unique keys."""
    columns = tuple(spec.column(name) for name in names)
    keys = unique_keys(spec)
    if not names or set(names) not in [set(key) for key in keys]:
        listed = "; ".join(",".join(key) for key in keys) or "none"
        raise BadQuery(f"'on={','.join(names)[:60]}' is not a unique key of table '{spec.name}'; unique keys: {listed}")
    return columns


def checked_rows(spec: TableSpec, on: tuple[ColumnSpec, ...], items: list, max_rows: int,
                 keyless: bool = False) -> list[dict]:
    """Each item checked as a row to upsert (its ``on`` values required, none repeated). With
    ``keyless``, a row may leave out ``on`` columns the database fills (a generated key, a
    default): it is a new row."""
    if not items:
        raise BadValue("an upsert needs at least one row")
    if len(items) > max_rows:
        raise BadQuery(f"an upsert takes at most {max_rows} rows, got {len(items)}")
    allow_pk = any(c in spec.primary_key for c in on)
    rows, seen = [], {}
    for index, item in enumerate(items):
        try:
            values = spec.values_for_write(item, insert=True, allow_pk=allow_pk)
            missing = [c.name for c in on if c.name not in values]
            if missing and (not keyless or any(spec.columns[name].required for name in missing)):
                raise MissingColumn(f"column '{missing[0]}' names the row to upsert and is required",
                                    column=missing[0])
        except ApiError as exc:
            raise at_index(index, exc) from None
        if missing:
            rows.append(values)
            continue
        key = tuple(values[c.name] for c in on)
        if key in seen:
            raise at_index(index, BadValue(f"repeats the key of item {seen[key]}"))
        seen[key] = index
        rows.append(values)
    return rows


def upsert(session: Session, spec: TableSpec, on: tuple[ColumnSpec, ...], rows: list[dict],
           ignore: bool = False, defaults: tuple[str, ...] = ()) -> tuple[list[tuple], set[tuple]]:
    """Upsert checked ``rows``: (the primary keys of the rows they name, in their order; the
    primary keys of those that were inserted). With ``ignore``, an existing row stays as it is
    and only the rows inserted are named. A row without all of its ``on`` values is inserted.
    A row that leaves out a column of ``defaults`` writes its default there."""
    if any(any(c.name not in row for c in on) for row in rows):
        return _with_new_rows(session, spec, on, rows, ignore, defaults)
    if defaults:
        dialect_name = session.get_bind().dialect.name
        filled = {name: column_default(dialect_name, spec.table.c[name]) for name in defaults}
        rows = [{**{name: value for name, value in filled.items() if name not in row}, **row} for row in rows]
    keys = [tuple(row[c.name] for c in on) for row in rows]
    if ignore:
        new = _insert_new(session, spec, on, rows)
        keys = [key for key in keys if key in new]
    else:
        new = set(keys) - set(_found(session, spec, on, keys))
        _execute(session, spec, on, rows, ignore=False)
    found = _found(session, spec, on, keys)
    _check_found(spec, on, keys, found)
    return [found[key] for key in keys], {found[key] for key in keys if key in new}


def _with_new_rows(session: Session, spec: TableSpec, on: tuple[ColumnSpec, ...], rows: list[dict],
                   ignore: bool, defaults: tuple[str, ...]) -> tuple[list[tuple], set[tuple]]:
    """Rows that name their ``on`` values upserted, the others inserted, in the rows' order."""
    keyed = [row for row in rows if all(c.name in row for c in on)]
    upserted, inserted = upsert(session, spec, on, keyed, ignore, defaults) if keyed else ([], set())
    by_row = dict(zip(map(id, keyed), upserted)) if not ignore else {}
    keys = []
    for row in rows:
        if all(c.name in row for c in on):
            if id(row) in by_row:
                keys.append(by_row[id(row)])
            continue
        key, _ = insert_values(session, spec, row)
        keys.append(key)
        inserted.add(key)
    return (keys if not ignore else upserted + [key for key in keys]), inserted


def _found(session: Session, spec: TableSpec, on: tuple[ColumnSpec, ...], keys: list[tuple]) -> dict:
    """``on`` values -> primary key, of the rows with these ``on`` values."""
    pk = [c.column for c in spec.primary_key]
    found = {}
    for start in range(0, len(keys), 1000):
        stmt = select(*(c.column for c in on), *pk).where(_in(on, keys[start:start + 1000]))
        found.update({tuple(row[:len(on)]): tuple(row[len(on):]) for row in session.execute(stmt)})
    return found


def _execute(session: Session, spec: TableSpec, on: tuple[ColumnSpec, ...], rows: list[dict], ignore: bool,
             returning: bool = False) -> list[tuple]:
    """Run the upsert in as few statements as the parameter limit allows; with ``returning``,
    the ``on`` values of the rows the statements return."""
    insert = _INSERTS.get(session.get_bind().dialect.name)
    if insert is None:
        raise BadQuery(f"upsert by a unique key is not supported on {session.get_bind().dialect.name}")
    returned = []
    for group in _groups(rows):
        per_statement = max(1, MAX_PARAMETERS // len(group[0]))
        for start in range(0, len(group), per_statement):
            stmt = _statement(insert, spec, on, group[start:start + per_statement], ignore)
            if returning:
                returned += [tuple(row) for row in session.execute(stmt.returning(*(c.column for c in on)))]
            else:
                session.execute(stmt)
    return returned


def _insert_new(session: Session, spec: TableSpec, on: tuple[ColumnSpec, ...], rows: list[dict]) -> set[tuple]:
    """Insert the rows whose ``on`` values are new, leave the others be; the ``on`` values inserted.

    PostgreSQL and SQLite say which with ON CONFLICT DO NOTHING ... RETURNING. MariaDB's RETURNING
    also returns the rows ON DUPLICATE KEY left alone, so there it is INSERT IGNORE ... RETURNING,
    which returns only the rows inserted and takes no lock on the gaps where the missing keys
    would go (a locking read of them first deadlocked concurrent upserts). IGNORE also skips a row
    for other reasons: any warning but a duplicate is a 409, and a row skipped as a duplicate of
    another unique key than ``on`` is one too (``_check_found``)."""
    if session.get_bind().dialect.name not in ("mysql", "mariadb"):
        return set(_execute(session, spec, on, rows, ignore=True, returning=True))
    inserted = set()
    for group in _groups(rows):
        per_statement = max(1, MAX_PARAMETERS // len(group[0]))
        for start in range(0, len(group), per_statement):
            chunk = group[start:start + per_statement]
            stmt = mysql.insert(spec.table).values(chunk).prefix_with("IGNORE").returning(*(c.column for c in on))
            returned = {tuple(row) for row in session.execute(stmt)}
            if len(returned) < len(chunk):
                _refuse_warnings(session)
            inserted |= returned
    skipped = [tuple(row[c.name] for c in on) for row in rows]
    skipped = [key for key in skipped if key not in inserted]
    _check_found(spec, on, skipped, _found(session, spec, on, skipped))
    return inserted


def _refuse_warnings(session: Session) -> None:
    """After INSERT IGNORE skipped rows: a 409 unless every one was a duplicate key (MariaDB 1062)."""
    codes = {row[1] for row in session.execute(text("SHOW WARNINGS"))}
    if codes - {_DUPLICATE_KEY}:
        if _FOREIGN_KEY in codes:
            raise ForeignKeyViolation("the change references a missing row, or a row that others still reference")
        raise Conflict("the change violates a database constraint")


def _check_found(spec: TableSpec, on: tuple[ColumnSpec, ...], keys: list[tuple], found: dict) -> None:
    """A 409 when a row named by ``on`` is not there after the upsert: on MariaDB, its values
    clashed with another row on another unique key, and ON DUPLICATE KEY changed that row instead."""
    if any(key not in found for key in keys):
        raise UniqueViolation(f"a row clashes with another on a unique key other than "
                              f"{', '.join(c.name for c in on)} of table '{spec.name}'")


def _groups(rows: list[dict]) -> list[list[dict]]:
    """Rows by the set of columns they give: one multi-row statement per set."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


def _statement(insert, spec: TableSpec, on: tuple[ColumnSpec, ...], rows: list[dict], ignore: bool):
    stmt = insert(spec.table).values(rows)
    on_names = [c.name for c in on]
    changed = [] if ignore else [name for name in rows[0] if name not in on_names]
    if insert is mysql.insert:
        if not changed:  # a column set to its own stored value is MariaDB's "do nothing" on a duplicate
            return stmt.on_duplicate_key_update({on_names[0]: spec.table.c[on_names[0]]})
        return stmt.on_duplicate_key_update({name: stmt.inserted[name] for name in changed})
    if ignore:
        return stmt.on_conflict_do_nothing(index_elements=[c.column for c in on])
    # a merge updates the row it meets even when the body gives no other column (as PostgREST's
    # ON CONFLICT DO UPDATE SET <key> = EXCLUDED.<key>): the row is locked and written all the same
    return stmt.on_conflict_do_update(index_elements=[c.column for c in on],
                                      set_={name: stmt.excluded[name] for name in changed or on_names[:1]})


def _in(on: tuple[ColumnSpec, ...], keys: list[tuple]):
    if len(on) == 1:
        return on[0].column.in_([key[0] for key in keys])
    return tuple_(*(c.column for c in on)).in_(keys)
