"""The generic table service's statements: insert, read, upsert, update, delete rows of any table.

Functions take a Session, a ``TableSpec`` and checked values, and return plain Python values.
They never commit: the request boundary (``Database.session``) does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tiddly.errors import ApiError, BadValue, NotFound, UniqueViolation
from tiddly.registry import TableSpec
from tiddly.services.etags import Precondition, row_etag
from tiddly.storage import advance_sequence, translate_error


def get_row(session: Session, spec: TableSpec, pk: tuple) -> dict:
    row = find_row(session, spec, pk)
    if row is None:
        raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)
    return row


def find_row(session: Session, spec: TableSpec, pk: tuple) -> dict | None:
    """The row with primary key ``pk`` (its readable columns), or None."""
    statements = _statements(spec)
    row = session.execute(statements.select, statements.pk_params(pk)).mappings().first()
    return None if row is None else dict(row)


def insert_values(session: Session, spec: TableSpec, values: dict) -> tuple[tuple, dict]:
    """Insert one row of checked values; (its primary key, the row as stored)."""
    try:
        if not session.get_bind().dialect.insert_returning:
            pk = _insert(session, spec, values)
            return pk, get_row(session, spec, pk)
        # One round trip: the stored row (generated key, server defaults) comes back with the insert.
        row = session.execute(_statements(spec).insert_returning, values).mappings().one()
    except IntegrityError as exc:
        raise _with_values(translate_error(exc), values) from exc
    return tuple(row[c.name] for c in spec.primary_key), _returned_row(spec, row)


def _with_values(error: Exception, values: dict) -> Exception:
    """A unique violation, with the clashing key's values from the row (SQLite names only its columns)."""
    clash = getattr(error, "clash", None)
    if isinstance(error, UniqueViolation) and clash and "values" not in clash \
            and all(name in values for name in clash.get("columns", ())):
        error.clash = {**clash, "values": ", ".join(str(values[name]) for name in clash["columns"])}
    return error


def insert_many(session: Session, spec: TableSpec, rows: list[dict]) -> list[tuple]:
    """Insert every row (checked values) or none; the keys in order. An error names the failing
    item's index."""
    try:
        with session.begin_nested():
            return _insert_many(session, spec, rows)
    except IntegrityError:
        pass
    # Some row broke a constraint: insert one by one to name it (the caller rolls back).
    for index, values in enumerate(rows):
        try:
            with session.begin_nested():
                _insert(session, spec, values)
        except IntegrityError as exc:
            raise at_index(index, _with_values(translate_error(exc), values)) from exc
    raise AssertionError("a bulk insert failed but no single row did")


def put_row(session: Session, spec: TableSpec, pk: tuple, values: dict,
            precondition: Precondition | None = None, max_key_gap: int | None = None) -> tuple[bool, bool, dict]:
    """Set ``values`` on the row with ``pk`` if it exists, else create it with them.
    Returns (created, changed, the row as stored). A generated key chosen by the client may lie
    at most ``max_key_gap`` above the table's highest (see ``_check_key_gap``)."""
    statements = _statements(spec)
    if precondition is not None:
        _check_locked(session, spec, pk, precondition, must_exist=False)
    exists = session.execute(statements.lock, statements.pk_params(pk)).first()
    if exists is None:
        pk_values = {c.name: v for c, v in zip(spec.primary_key, pk)}
        spec.check_required({**values, **pk_values})
        auto = spec.table.autoincrement_column
        chosen = pk_values.get(auto.name) if auto is not None else None
        if chosen is not None and max_key_gap is not None:
            _check_key_gap(session, spec, auto, chosen, max_key_gap)
        created = _insert(session, spec, {**values, **pk_values})
        if chosen is not None:
            advance_sequence(session, spec.table, auto.name, chosen)
        return True, True, get_row(session, spec, created)
    if values:
        session.execute(statements.update, {**values, **statements.pk_params(pk)})
    return False, bool(values), get_row(session, spec, pk)


def update_row(session: Session, spec: TableSpec, pk: tuple, values: dict,
               precondition: Precondition | None = None) -> dict:
    """Set ``values`` (checked) on the row with ``pk``; the row after, or a 404."""
    if precondition is not None:
        _check_locked(session, spec, pk, precondition, must_exist=True)
    if not values:
        return get_row(session, spec, pk)
    statements = _statements(spec)
    params = {**values, **statements.pk_params(pk)}
    if spec.readable and session.get_bind().dialect.update_returning:  # one round trip, not two
        row = session.execute(statements.update_returning, params).mappings().first()
        if row is None:
            raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)
        return _returned_row(spec, row)
    if session.execute(statements.update, params).rowcount == 0:
        raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)
    return get_row(session, spec, changed_key(spec, pk, values))


def delete_row(session: Session, spec: TableSpec, pk: tuple, precondition: Precondition | None = None) -> None:
    statements = _statements(spec)
    if precondition is not None:
        _check_locked(session, spec, pk, precondition, must_exist=True)
    result = session.execute(statements.delete, statements.pk_params(pk))
    if result.rowcount == 0:
        raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)


def changed_key(spec: TableSpec, pk: tuple, values: dict) -> tuple:
    """The primary key of a row after ``values`` were set on it."""
    return tuple(values.get(c.name, v) for c, v in zip(spec.primary_key, pk))


def check_chosen_keys(session: Session, spec: TableSpec, rows, gap: int) -> None:
    """Rows about to be inserted that choose their own generated key: see ``_check_key_gap``."""
    auto = spec.table.autoincrement_column
    chosen = [row[auto.name] for row in rows if auto is not None and isinstance(row.get(auto.name), int)]
    if chosen:
        _check_key_gap(session, spec, auto, max(chosen), gap)


def _check_key_gap(session: Session, spec: TableSpec, column, chosen: int, gap: int) -> None:
    """A generated key a client chooses moves the database's generator past it (PostgreSQL's
    sequence, MariaDB's AUTO_INCREMENT), so one chosen near the end of its type would leave the
    table unable to take another insert: a chosen key may lie at most ``gap`` above the highest."""
    highest = session.execute(select(func.coalesce(func.max(column), 0))).scalar_one()
    if chosen > highest + gap:
        raise BadValue(f"'{column.name}' is generated by the database: a row created with a key of its own "
                       f"may take one at most {gap} above the highest ({highest}), got {chosen} "
                       "(TIDDLY_MAX_KEY_GAP)", column=column.name)


# -- writes by filter, by the keys they lock first (so the change feed knows every row) --------

KEYS_PER_WRITE = 1000  # keys per UPDATE/DELETE ... WHERE key IN (...): IN lists stay short


def locked_keys(session: Session, spec: TableSpec, condition, order: list, limit: int | None = None,
                offset: int = 0) -> list[tuple]:
    """The primary keys of the rows ``condition`` (SQL) matches (the first ``limit`` after ``offset``
    in ``order``, which the key ends), locked until the transaction ends, so a write by these keys
    changes exactly the rows the filter found (portable: MariaDB has no UPDATE ... RETURNING)."""
    keys = [c.column for c in spec.primary_key]
    stmt = select(*keys).where(condition).order_by(*order).limit(limit).offset(offset or None).with_for_update()
    return [tuple(row) for row in session.execute(stmt)]


def update_keys(session: Session, spec: TableSpec, keys: list[tuple], values: dict) -> list[tuple]:
    """Set ``values`` (checked) on the rows with these primary keys; returns their keys after the update."""
    if values:
        for chunk in _chunks(keys):
            session.execute(update(spec.table).where(spec.pk_in(chunk)).values(values))
    return [changed_key(spec, key, values) for key in keys]


def update_where(session: Session, spec: TableSpec, condition, values: dict) -> list[tuple]:
    """Set ``values`` (checked) on every row ``condition`` (SQL) matches, in one statement that
    names their keys (after the update) as it goes: the rows are changed in the order the
    database reads them, as a plain UPDATE would. Needs UPDATE ... RETURNING."""
    keys = [c.column for c in spec.primary_key]
    return [tuple(row) for row in session.execute(update(spec.table).where(condition).values(values)
                                                   .returning(*keys))]


def delete_keys(session: Session, spec: TableSpec, keys: list[tuple]) -> int:
    """Delete the rows with these primary keys; returns how many went."""
    return sum(session.execute(delete(spec.table).where(spec.pk_in(chunk))).rowcount for chunk in _chunks(keys))


def _chunks(keys: list[tuple]) -> list[list[tuple]]:
    return [keys[start:start + KEYS_PER_WRITE] for start in range(0, len(keys), KEYS_PER_WRITE)]


# -- helpers -------------------------------------------------------------------

def _check_locked(session: Session, spec: TableSpec, pk: tuple, precondition: Precondition, must_exist: bool) -> None:
    """Lock the row and check the write's If-Match / If-None-Match on its ETag, in the write's own
    transaction: no other write can change the row between the check and this write."""
    statements = _statements(spec)
    row = session.execute(statements.lock_row, statements.pk_params(pk)).mappings().first()
    if row is None and must_exist:
        raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)
    precondition.check(None if row is None else row_etag(dict(row)))


@dataclass(frozen=True)
class _TableStatements:
    """A table's statements by primary key, built once: values and keys arrive as
    parameters, so a request reuses the statement, its cache key and its compiled form
    instead of building all three (a third of a write's cost)."""
    pk_names: tuple[str, ...]   # the key's parameter names; no column is named so
    select: Any
    lock: Any
    lock_row: Any
    insert: Any
    insert_returning: Any
    update: Any
    update_returning: Any
    delete: Any

    def pk_params(self, pk: tuple) -> dict:
        return dict(zip(self.pk_names, pk))


_STATEMENTS: dict = {}


def _statements(spec: TableSpec) -> _TableStatements:
    key = (spec.table, spec.readable)
    statements = _STATEMENTS.get(key)
    if statements is None:
        statements = _STATEMENTS[key] = _build_statements(spec)
    return statements


def _build_statements(spec: TableSpec) -> _TableStatements:
    prefix = "pk_"
    while any(str(c.key).startswith(prefix) for c in spec.table.columns):
        prefix = "_" + prefix  # UPDATE takes its SET values by column key: keep clear of them
    names = tuple(f"{prefix}{i}" for i in range(len(spec.primary_key)))
    by_pk = [c.column == bindparam(n) for c, n in zip(spec.primary_key, names)]
    readable = [c.column for c in spec.readable]
    returned = readable + [c.column for c in spec.primary_key if not c.readable]
    return _TableStatements(
        pk_names=names,
        select=select(*readable).where(*by_pk),
        lock=select(*(c.column for c in spec.primary_key)).where(*by_pk).with_for_update(),
        lock_row=select(*readable).where(*by_pk).with_for_update(),
        insert=insert(spec.table),
        insert_returning=insert(spec.table).returning(*returned),
        update=update(spec.table).where(*by_pk),
        update_returning=update(spec.table).where(*by_pk).returning(*readable),
        delete=delete(spec.table).where(*by_pk),
    )


def _insert(session: Session, spec: TableSpec, values: dict) -> tuple:
    result = session.execute(_statements(spec).insert, values)
    return tuple(result.inserted_primary_key)


def insert_batch(session: Session, spec: TableSpec, rows: list[dict]) -> list[tuple]:
    """Insert checked rows in as few statements as the database allows; their primary keys."""
    return _insert_many(session, spec, rows)


def _insert_many(session: Session, spec: TableSpec, rows: list[dict]) -> list[tuple]:
    dialect = session.get_bind().dialect
    same_keys = len({frozenset(r) for r in rows}) == 1
    if same_keys and dialect.insert_executemany_returning_sort_by_parameter_order:
        pk_columns = [c.column for c in spec.primary_key]
        stmt = insert(spec.table).returning(*pk_columns, sort_by_parameter_order=True)
        return [tuple(r) for r in session.execute(stmt, rows)]
    return [_insert(session, spec, values) for values in rows]


def _returned_row(spec: TableSpec, row) -> dict:
    # SQLite's RETURNING gives a REAL column's value before type affinity (3, where SELECT says 3.0).
    return {c.name: float(row[c.name]) if c.kind == "number" and row[c.name] is not None else row[c.name]
            for c in spec.readable}


def for_item(index: int, check, item, **kwargs):
    """``check(item)``, its error naming the item's index."""
    try:
        return check(item, **kwargs)
    except ApiError as exc:
        raise at_index(index, exc) from None


def at_index(index: int, exc: Exception) -> Exception:
    if isinstance(exc, ApiError):
        exc.message = f"item {index}: {exc.message}"
        exc.details["index"] = index
    return exc


def _pk_text(pk: tuple) -> str:
    return ",".join(str(v) for v in pk)
