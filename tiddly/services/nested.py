"""Nested insert: ``POST /stores {"name": ..., "items": [{...}, ...]}`` writes the row and its
one-to-many related rows in the request's one transaction, so a bad item leaves nothing behind.

The related rows get their foreign key from the new parent; they may leave it
out or repeat it, never contradict it. Takes a Session, never commits.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tiddly.config import Config
from tiddly.errors import ApiError, BadValue
from tiddly.registry import Registry, TableSpec
from tiddly.services import crud


def has_children(spec: TableSpec, obj: Any) -> bool:
    return isinstance(obj, dict) and any(name in spec.relations for name in obj)


def insert_with_children(session: Session, spec: TableSpec, registry: Registry, obj: dict,
                         config: Config) -> tuple[Any, dict]:
    children = {name: obj[name] for name in obj if name in spec.relations}
    pk, row = crud.insert_row(session, spec, {k: v for k, v in obj.items() if k not in children})
    parent = dict(row)
    for name, items in children.items():
        row[name] = _insert_children(session, spec, registry, name, items, parent, pk, config)
    return pk, row


def _insert_children(session: Session, spec: TableSpec, registry: Registry, name: str, items: Any,
                     parent: dict, pk: Any, config: Config) -> list[dict]:
    relation = spec.relations[name]
    if not relation.many:
        raise BadValue(f"'{name}' is a single related row; insert it first and send its key instead",
                       column=name)
    if not isinstance(items, list):
        raise BadValue(f"'{name}' must be a list of rows for table '{relation.target}'", column=name)
    target = registry.get(relation.target)
    link = {remote: _parent_value(spec, parent, pk, local) for local, remote in relation.pairs}
    rows = [_linked(name, index, item, link) for index, item in enumerate(items)]
    if not rows:
        return []
    try:
        ids = crud.insert_rows(session, target, rows, config)
    except ApiError as exc:
        exc.message = f"{name}: {exc.message}"
        exc.details["relation"] = name
        raise
    return [crud.get_row(session, target, tuple(key) if isinstance(key, list) else (key,)) for key in ids]


def _parent_value(spec: TableSpec, parent: dict, pk: Any, local: str) -> Any:
    if local in parent:
        return parent[local]
    keys = pk if isinstance(pk, list) else [pk]
    return dict(zip((c.name for c in spec.primary_key), keys))[local]


def _linked(name: str, index: int, item: Any, link: dict) -> dict:
    if not isinstance(item, dict):
        raise BadValue(f"{name}: item {index}: a related row must be a JSON object", index=index, relation=name)
    for column, value in link.items():
        if column in item and item[column] != value:
            raise BadValue(f"{name}: item {index}: '{column}' must be the new parent's key or left out",
                           index=index, relation=name, column=column)
    return {**item, **link}
