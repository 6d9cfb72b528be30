"""Running a write plan: what it changes, in the caller's transaction, and what it hands back.

Each runner returns ``Written``: the primary keys of the rows written (in the request's
order), the rows when the plan reads them back (``returning``) or when the write by key
answers its row, and one ``Change`` per row changed, which ``execute`` hands to the hooks
registered for changes (the change feed). Takes a Session, never commits.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from sqlalchemy.orm import Session

from tiddly.services import crud, export, nested, reads, upsert
from tiddly.services.plan import (
    Change,
    Context,
    Delete,
    Import,
    Insert,
    Put,
    Read,
    Update,
    Upsert,
    Written,
)
from tiddly.services.query import order_clauses, where_clause


def run_insert(session: Session, op: Insert, context: Context) -> Written:
    spec = op.table
    crud.check_chosen_keys(session, spec, op.rows, context.config.max_key_gap)
    if op.bulk:
        keys = crud.insert_many(session, spec, list(op.rows))
        return _returned(session, op, context, Written(keys, count=len(keys), changes=_changes(spec.name, "insert", keys)))
    key, row = crud.insert_values(session, spec, op.rows[0])
    written = Written([key], [row], 1, changes=[Change(spec.name, "insert", key, dict(row))])
    for children in op.children:
        rows, changes = nested.insert_children(session, spec, row, key, children)
        row[children.relation.name] = rows
        written.changes += changes
    return _returned(session, op, context, written)


def run_upsert(session: Session, op: Upsert, context: Context) -> Written:
    crud.check_chosen_keys(session, op.table, op.rows, context.config.max_key_gap)
    keys, inserted = upsert.upsert(session, op.table, op.on, list(op.rows), op.ignore, op.defaults)
    changes = [Change(op.table.name, "insert" if key in inserted else "update", key) for key in keys]
    return _returned(session, op, context, Written(keys, count=len(keys), changes=changes))


def run_put(session: Session, op: Put, context: Context) -> Written:
    created, changed, row = crud.put_row(session, op.table, op.key, op.values, op.precondition,
                                         context.config.max_key_gap)
    key = crud.changed_key(op.table, op.key, {} if created else op.values)
    changes = [Change(op.table.name, "insert" if created else "update", key, dict(row))] if changed else []
    return _returned(session, op, context, Written([key], [row], 1, created, changes))


def run_update(session: Session, op: Update, context: Context) -> Written:
    spec = op.table
    if op.key is not None:
        row = crud.update_row(session, spec, op.key, op.values, op.precondition)
        keys = [crud.changed_key(spec, op.key, op.values)]
        written = Written(keys, [row], 1)
    elif op.values and op.limit is None and not op.offset and session.get_bind().dialect.update_returning:
        keys = crud.update_where(session, spec, where_clause(op.where), op.values)
        written = Written(keys, count=len(keys))
    else:  # MariaDB has no UPDATE ... RETURNING, and a limited update chooses its rows first
        keys = crud.update_keys(session, spec, _locked(session, op), op.values)
        written = Written(keys, count=len(keys))
    if op.values:
        written.changes = [Change(spec.name, "update", keys[0], dict(written.rows[0]))] if op.key is not None \
            else _changes(spec.name, "update", keys)
    return _returned(session, op, context, written)


def run_delete(session: Session, op: Delete, context: Context) -> Written:
    spec = op.table
    if op.key is not None:
        crud.delete_row(session, spec, op.key, op.precondition)
        keys = [op.key]
        written = Written(keys, count=1)
    else:
        keys = _locked(session, op)
        written = _returned(session, op, context, Written(keys, count=len(keys)))  # read before they go
        crud.delete_keys(session, spec, keys)
    written.changes = _changes(spec.name, "delete", keys)
    return written


def run_import(session: Session, op: Import, context: Context) -> Written:
    keys = export.insert_parsed(session, op.table, op.rows, context.config.max_key_gap)
    return Written(keys, count=len(keys), changes=_changes(op.table.name, "insert", keys))


RUNNERS: dict[type, Callable[[Session, object, Context], Written]] = {
    Insert: run_insert, Upsert: run_upsert, Put: run_put, Update: run_update, Delete: run_delete,
    Import: run_import,
}


def _locked(session: Session, op: Update | Delete) -> list[tuple]:
    """The keys of the rows a write by filter changes, locked (``limit``/``offset`` choose among
    them in ``order``, which the primary key ends, so the choice is stable)."""
    order = order_clauses(Read(op.table, (), order=op.order))
    return crud.locked_keys(session, op.table, where_clause(op.where), order, op.limit, op.offset)


def _returned(session: Session, op, context: Context, written: Written) -> Written:
    """``written`` with the rows the plan reads back, by their keys, in their order (its embeds
    bounded as a read's: see ``execute``)."""
    if op.returning is not None:
        written.rows = reads.run(session, replace(op.returning, keys=tuple(written.keys)), context.budget).rows
    return written


def _changes(table: str, kind: str, keys: list[tuple]) -> list[Change]:
    return [Change(table, kind, key) for key in keys]
