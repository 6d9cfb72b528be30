"""Row ETags and the conditions on them (``If-Match``, ``If-None-Match``). Pure: no Flask.

A row's ETag is a hash of the row as the API answers it (its readable columns,
as JSON): it changes whenever a value a client can read changes, is the same on
every worker and database, and says nothing about hidden columns. A write by
primary key checks its conditions against the row locked in its own
transaction (crud.py), so no other write can come between the check and the
write: a read-modify-write client that sends ``If-Match`` loses no update.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tiddly import jsonio
from tiddly.errors import PreconditionFailed

ANY = "*"


def row_etag(row: dict) -> str:
    """The row's entity tag, without the quotes of the header."""
    return hashlib.sha256(jsonio.dumps(row)).hexdigest()[:32]


@dataclass(frozen=True)
class Precondition:
    """A write's conditions: the entity tags (unquoted; ``ANY`` for ``*``) of its ``If-Match``
    (strong ones only: a weak tag never matches there) and of its ``If-None-Match``."""
    if_match: frozenset[str] | None = None
    if_none_match: frozenset[str] | None = None

    def check(self, current: str | None) -> None:
        """A 412 unless the row's ETag now (None: there is no such row) meets both conditions."""
        if self.if_match is not None:
            if current is None:
                raise PreconditionFailed("If-Match names a row that does not exist; nothing was written")
            if ANY not in self.if_match and current not in self.if_match:
                raise PreconditionFailed("the row changed since the ETag in If-Match was read; read it again, "
                                         "then retry; nothing was written")
        if self.if_none_match is not None and current is not None:
            if ANY in self.if_none_match:
                raise PreconditionFailed("the row exists, and If-None-Match: * writes only a new one; "
                                         "nothing was written")
            if current in self.if_none_match:
                raise PreconditionFailed("the row still has an ETag that If-None-Match names; nothing was written")
