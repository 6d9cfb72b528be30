"""Nested insert: ``POST /stores {"name": ..., "items": [{...}, ...]}`` writes the row and its
one-to-many related rows in the request's one transaction, so a bad item leaves nothing behind.

The related rows get their foreign key from the new parent; they may leave it out or repeat
it, never contradict it. Takes a Session, never commits.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tiddly.errors import ApiError, BadValue
from tiddly.registry import TableSpec
from tiddly.services import crud
from tiddly.services.plan import Change, Nested


def checked_children(relation_name: str, target: TableSpec, items: Any, many: bool) -> tuple[dict, ...]:
    """The rows of one relation of a nested insert, each checked (its link is filled in later)."""
    if not many:
        raise BadValue(f"'{relation_name}' is a single related row; insert it first and send its key instead",
                       column=relation_name)
    if not isinstance(items, list):
        raise BadValue(f"'{relation_name}' must be a list of rows for table '{target.name}'", column=relation_name)
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadValue(f"{relation_name}: item {index}: a related row must be a JSON object",
                           index=index, relation=relation_name)
        try:
            rows.append(target.values_for_write(item, insert=False))
        except ApiError as exc:
            raise _in_relation(relation_name, crud.at_index(index, exc)) from None
    return tuple(rows)


def insert_children(session: Session, parent: TableSpec, parent_row: dict, parent_key: tuple,
                    nested: Nested) -> tuple[list[dict], list[Change]]:
    """Insert ``nested``'s rows linked to the new parent; the rows as stored, and their changes."""
    values = dict(zip((c.name for c in parent.primary_key), parent_key))
    link = {remote: parent_row.get(local, values.get(local)) for local, remote in nested.relation.pairs}
    rows = [_linked(nested, index, row, link) for index, row in enumerate(nested.rows)]
    if not rows:
        return [], []
    try:
        keys = crud.insert_many(session, nested.table, rows)
    except ApiError as exc:
        raise _in_relation(nested.relation.name, exc) from None
    changes = [Change(nested.table.name, "insert", key) for key in keys]
    return [crud.get_row(session, nested.table, key) for key in keys], changes


def _linked(nested: Nested, index: int, row: dict, link: dict) -> dict:
    name = nested.relation.name
    for column, value in link.items():
        if column in row and row[column] != value:
            raise BadValue(f"{name}: item {index}: '{column}' must be the new parent's key or left out",
                           index=index, relation=name, column=column)
    linked = {**row, **link}
    try:
        nested.table.check_required(linked)
    except ApiError as exc:
        raise _in_relation(name, crud.at_index(index, exc)) from None
    return linked


def _in_relation(name: str, exc: ApiError) -> ApiError:
    exc.message = f"{name}: {exc.message}"
    exc.details["relation"] = name
    return exc
