"""After the commit: what a write scope runs once its work is durably committed.

``Database.session(write=True)`` exits only after its work is committed: on PostgreSQL and MariaDB
its own COMMIT, on SQLite the COMMIT of the group it joined (``groups.py``), durable as
``synchronous`` makes it. So code after the ``with`` block runs after the commit. Code inside the
block that learns what it changed (the services, a change feed) registers a callback instead:

    with db.session(write=True) as session:
        row = crud.insert_row(session, spec, body)
        after_commit(session, lambda: feed.publish(spec.name, "insert", row))

Callbacks run in the thread of the scope, in the order they were registered, after the commit and
before the ``with`` block exits; never for a scope that rolled back (its own error, or its group's
COMMIT failing). The commit stands whatever a callback does: an exception from one propagates to
the caller after the commit (the callbacks registered after it do not run). Read scopes commit
nothing and run none.
"""
from __future__ import annotations

from typing import Callable

from sqlalchemy.orm import Session

_CALLBACKS = "tiddly.after_commit"  # the key in Session.info


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the write scope that gave ``session`` has committed."""
    session.info.setdefault(_CALLBACKS, []).append(callback)


def run_after_commit(session: Session) -> None:
    """The scope's callbacks, once (the scope calls this after its commit)."""
    for callback in session.info.pop(_CALLBACKS, ()):
        callback()
