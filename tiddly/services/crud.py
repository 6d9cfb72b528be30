"""The generic table service: insert, read, query, upsert, update, delete.

Functions take a Session and a ``TableSpec`` and return plain Python values.
They never commit: the request boundary (``Database.session``) does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tiddly.config import Config
from tiddly.storage import advance_sequence, translate_error
from tiddly.errors import ApiError, BadQuery, BadValue, NotFound
from tiddly.registry import TableSpec
from tiddly.services.etags import Precondition, row_etag
from tiddly.services.query import (
    Query,
    build_count,
    build_select,
    compile_where,
    order_clauses,
    parse_orderby,
)


def get_row(session: Session, spec: TableSpec, pk: tuple) -> dict:
    statements = _statements(spec)
    row = session.execute(statements.select, statements.pk_params(pk)).mappings().first()
    if row is None:
        raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)
    return dict(row)


def fetch_rows(session: Session, spec: TableSpec, query: Query) -> dict:
    rows = session.execute(build_select(spec, query)).mappings().all()
    result: dict[str, Any] = {"data": [dict(r) for r in rows]}
    if query.count:
        result["count"] = session.execute(build_count(spec, query)).scalar_one()
    return result


def insert_row(session: Session, spec: TableSpec, obj: Any) -> tuple[Any, dict]:
    values = spec.values_for_write(obj, insert=True)
    if not session.get_bind().dialect.insert_returning:
        pk = _insert(session, spec, values)
        return spec.pk_json(pk), get_row(session, spec, pk)
    # One round trip: the stored row (generated key, server defaults) comes back with the insert.
    row = session.execute(_statements(spec).insert_returning, values).mappings().one()
    return spec.pk_json(row[c.name] for c in spec.primary_key), _returned_row(spec, row)


def insert_rows(session: Session, spec: TableSpec, items: list, config: Config) -> list:
    """Insert every item or none; an error names the failing item's index."""
    if not items:
        raise BadValue("a bulk insert needs at least one row")
    if len(items) > config.max_bulk_rows:
        raise BadQuery(f"a bulk insert takes at most {config.max_bulk_rows} rows, got {len(items)}")
    rows = [_for_item(index, spec.values_for_write, item, insert=True) for index, item in enumerate(items)]
    try:
        with session.begin_nested():
            return [spec.pk_json(pk) for pk in _insert_many(session, spec, rows)]
    except IntegrityError:
        pass
    # Some row broke a constraint: insert one by one to name it (the caller rolls back).
    for index, values in enumerate(rows):
        try:
            with session.begin_nested():
                _insert(session, spec, values)
        except IntegrityError as exc:
            raise _at_index(index, translate_error(exc)) from exc
    raise AssertionError("a bulk insert failed but no single row did")


def upsert_row(session: Session, spec: TableSpec, pk: tuple | None, obj: Any,
               precondition: Precondition | None = None) -> tuple[bool, Any, dict]:
    """Update the given fields if the row exists, create it if not. Returns (created, pk, row)."""
    if not isinstance(obj, dict):
        raise BadValue(f"a row for table '{spec.name}' must be a JSON object")
    body_pk = spec.pk_from_body(obj)
    if pk is None:
        if body_pk is None:
            names = ", ".join(c.name for c in spec.primary_key)
            raise BadValue(f"PUT /{spec.name} needs the primary key ({names}) in the path or the body")
        pk = body_pk
    elif body_pk is not None and body_pk != pk:
        raise BadValue("the primary key in the body differs from the one in the path")
    pk_values = {c.name: v for c, v in zip(spec.primary_key, pk)}
    fields = {k: v for k, v in obj.items() if k not in pk_values}
    statements = _statements(spec)
    if precondition is not None:
        _check_locked(session, spec, pk, precondition, must_exist=False)
    exists = session.execute(statements.lock, statements.pk_params(pk)).first()
    if exists is None:
        values = spec.values_for_write({**fields, **pk_values}, insert=True, allow_pk=True)
        pk = _insert(session, spec, values)
        auto = spec.table.autoincrement_column
        if auto is not None and auto.name in values:
            advance_sequence(session, spec.table, auto.name, values[auto.name])
        return True, spec.pk_json(pk), get_row(session, spec, pk)
    values = spec.values_for_write(fields, insert=False)
    if values:
        session.execute(statements.update, {**values, **statements.pk_params(pk)})
    return False, spec.pk_json(pk), get_row(session, spec, pk)


def patch_row(session: Session, spec: TableSpec, pk: tuple, obj: Any, precondition: Precondition | None = None) -> dict:
    values = spec.values_for_write(obj, insert=False)
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
    return get_row(session, spec, pk)


def delete_row(session: Session, spec: TableSpec, pk: tuple, precondition: Precondition | None = None) -> Any:
    statements = _statements(spec)
    if precondition is not None:
        _check_locked(session, spec, pk, precondition, must_exist=True)
    result = session.execute(statements.delete, statements.pk_params(pk))
    if result.rowcount == 0:
        raise NotFound(f"no row of '{spec.name}' has primary key {_pk_text(pk)}", table=spec.name)
    return spec.pk_json(pk)


def delete_where(session: Session, spec: TableSpec, where: Any, config: Config) -> int:
    if not isinstance(where, dict) or not where:
        raise BadQuery("deleting by filter needs a non-empty 'where'; to delete one row use its primary key")
    result = session.execute(delete(spec.table).where(compile_where(spec, where, config)))
    return result.rowcount


# -- writes by filter, returning the rows' keys (the PostgREST dialect's PATCH and DELETE) ----------

KEYS_PER_WRITE = 1000  # keys per UPDATE/DELETE ... WHERE key IN (...): IN lists stay short


def update_where(session: Session, spec: TableSpec, where: Any, obj: Any, config: Config) -> int:
    """Set ``obj``'s fields on every row ``where`` matches; returns how many rows matched."""
    values = spec.values_for_write(obj, insert=False)
    condition = compile_where(spec, _filter(where, "updating"), config)
    if not values:
        return session.execute(select(func.count()).select_from(spec.table).where(condition)).scalar_one()
    return session.execute(update(spec.table).where(condition).values(values)).rowcount


def locked_keys(session: Session, spec: TableSpec, where: Any, config: Config, orderby: Any = None,
                limit: int | None = None, offset: int = 0) -> list[tuple]:
    """The primary keys of the rows ``where`` matches (the first ``limit`` after ``offset`` in
    ``orderby``'s order, else key order), locked until the transaction ends, so a write by these
    keys changes exactly the rows the filter found (portable: MariaDB has no UPDATE ... RETURNING)."""
    condition = compile_where(spec, _filter(where, "writing"), config)
    keys = [c.column for c in spec.primary_key]
    order = order_clauses(parse_orderby(spec, orderby))  # the key ends it: locks and answers in one order
    stmt = select(*keys).where(condition).order_by(*order).limit(limit).offset(offset or None).with_for_update()
    return [tuple(row) for row in session.execute(stmt)]


def update_keys(session: Session, spec: TableSpec, keys: list[tuple], obj: Any) -> list[tuple]:
    """Set ``obj``'s fields on the rows with these primary keys; returns their keys after the update."""
    values = spec.values_for_write(obj, insert=False)
    if values:
        for chunk in _chunks(keys):
            session.execute(update(spec.table).where(spec.pk_in(chunk)).values(values))
    position = {c.name: i for i, c in enumerate(spec.primary_key)}
    changed = {position[name]: value for name, value in values.items() if name in position}
    return [tuple(changed.get(i, v) for i, v in enumerate(key)) for key in keys] if changed else keys


def delete_keys(session: Session, spec: TableSpec, keys: list[tuple]) -> int:
    """Delete the rows with these primary keys; returns how many went."""
    return sum(session.execute(delete(spec.table).where(spec.pk_in(chunk))).rowcount for chunk in _chunks(keys))


def _filter(where: Any, doing: str) -> dict:
    if not isinstance(where, dict) or not where:
        raise BadQuery(f"{doing} by filter needs a non-empty 'where'; to change one row use its primary key")
    return where


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


def _for_item(index: int, func, item, **kwargs):
    try:
        return func(item, **kwargs)
    except ApiError as exc:
        raise _at_index(index, exc) from None


def _at_index(index: int, exc: Exception) -> Exception:
    if isinstance(exc, ApiError):
        exc.message = f"item {index}: {exc.message}"
        exc.details["index"] = index
    return exc


def _pk_text(pk: tuple) -> str:
    return ",".join(str(v) for v in pk)
