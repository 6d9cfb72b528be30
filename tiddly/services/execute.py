"""``execute``: where every operation of every way in meets the database (DESIGN section 10).

Every dialect (Tiddly's JSON API, the PostgREST dialect), the patient monitor's routes and
the command line's import hand their typed operation (``plan.py``) to one ``Executor``,
which, in this order: decides from the operation what it reads and writes whether the
caller may (``access.decide``); chooses the connection (a write scope on the primary, or a
read scope on a read replica that has replayed the caller's own writes, or the primary);
applies ``Idempotency-Key``; runs the operation's runner; in the write's transaction, hands
its changes to the hooks registered for them; commits; then hands them to the hooks
registered for after the commit. A write the database undid to break a deadlock runs again
(a few times) when running it again does the same. Extensions register their own
operations (``register``) and hooks (``on_changes``) on the app's executor.
"""
from __future__ import annotations

import random
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy.orm import Session

from tiddly.config import Config
from tiddly.services import access, auth, idempotency, limits, reads, writes
from tiddly.services.auth import Principal
from tiddly.services.plan import Change, Context, Explain, Read
from tiddly.storage import Database, Deadlock

DEADLOCK_ATTEMPTS = 4


@dataclass
class Answer:
    """An answer as stored for an ``Idempotency-Key`` and replayed: status, body, headers."""
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class Idempotent:
    """A write's ``Idempotency-Key`` and the fingerprint of its request (method, target, body)."""
    key: str
    fingerprint: str


class Executor:
    def __init__(self, db: Database, config: Config):
        self.db, self.config = db, config
        self._runners: dict[type, Callable] = {Read: _read, Explain: _explain, **writes.RUNNERS}
        self._in_transaction: list[Callable[[Session, list[Change]], None]] = []
        self._after_commit: list[Callable[[list[Change]], None]] = []

    # -- registration ------------------------------------------------------------------------

    def register(self, operation_type: type, runner: Callable) -> None:
        """An extension's operation: ``runner(session, operation, context)`` runs it (a write returns
        ``plan.Written``; ``context``: ``plan.Context``, the settings and the embedding budget);
        the operation's ``reads`` and ``writes`` name its tables."""
        self._runners[operation_type] = runner

    def on_changes(self, in_transaction: Callable[[Session, list[Change]], None] | None = None,
                   after_commit: Callable[[list[Change]], None] | None = None) -> None:
        """Hooks for every committed change: ``in_transaction`` runs in the write's own
        transaction, before its commit (what it writes commits or rolls back with the write);
        ``after_commit`` runs once the commit is done."""
        if in_transaction is not None:
            self._in_transaction.append(in_transaction)
        if after_commit is not None:
            self._after_commit.append(after_commit)

    # -- running ------------------------------------------------------------------------------

    def execute(self, operation, principal: Principal, render: Callable[[Any], Any] | None = None,
                idempotent: Idempotent | None = None, rollback: bool = False) -> Any:
        """Run ``operation`` for ``principal``; the result, or what ``render`` makes of it. A write's
        ``render`` runs in its transaction (an error there undoes the write); with ``idempotent``,
        it returns an ``Answer``, stored with the write and replayed for the same key. With
        ``rollback``, a write is run and rendered, then undone: nothing of it is committed and no
        hook sees it (who may run it is decided all the same)."""
        access.decide(operation, principal)
        limits.check(operation, self.config)
        runner = self._runners[type(operation)]
        if not operation.writes:
            with self.db.session(writer=principal.writer, owed=_owed(principal)) as session:  # a replica with its writes
                result = runner(session, operation, self._context())
                auth.confirm(self.db, principal)
                return render(result) if render is not None else result
        if idempotent is not None:
            self._purge_expired_keys()
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                answer, changes = self._write(runner, operation, principal, render, idempotent, rollback)
                break
            except Deadlock:
                if attempt == DEADLOCK_ATTEMPTS or not getattr(operation, "retryable", True):
                    raise
                time.sleep(random.uniform(0, 0.01 * attempt))
        for hook in self._after_commit if changes else ():
            hook(changes)
        return answer

    def refuse_reused_key(self, idempotent: Idempotent) -> None:
        """A 409 at once when the request's Idempotency-Key belongs to a different request."""
        with self.db.session(latest=True) as session:  # a key another instance just stored
            idempotency.refuse_reuse(session, idempotent.key, idempotent.fingerprint)

    def stream(self, operation, principal: Principal,
               chunks: Callable[[Session], Iterable[bytes]]) -> Iterator[bytes]:
        """A read answered as it is read (an export, the monitor's list of stays): ``chunks(session)``
        makes the answer's bytes. Who may run it is decided, and its first chunk made, before this
        returns, so a refusal or a database that is down is still an error answer; the read scope
        stays open until the last chunk is sent."""
        access.decide(operation, principal)
        limits.check(operation, self.config)
        scope = ExitStack()
        try:
            session = scope.enter_context(self.db.session(snapshot=True, owed=_owed(principal)))
            produced = iter(chunks(session))
            first = next(produced, None)
            auth.confirm(self.db, principal)
        except BaseException:
            scope.close()
            raise
        return _streamed(scope, first, produced)

    def _write(self, runner, operation, principal: Principal, render, idempotent: Idempotent | None,
               rollback: bool = False) -> tuple[Any, list[Change]]:
        try:
            with self.db.session(write=True, writer=principal.writer, owed=_owed(principal)) as session:
                if idempotent is not None:
                    stored = idempotency.claim(session, idempotent.key, idempotent.fingerprint,
                                               self.config.idempotency_ttl_s)
                    if stored is not None:
                        auth.confirm(self.db, principal)
                        return Answer(stored.status, stored.body, replayed=True), []
                written = runner(session, operation, self._context())
                auth.confirm(self.db, principal)  # before anything commits
                answer = render(written) if render is not None else written
                if rollback:
                    raise _Undone(answer)  # the session scope rolls the write back
                if idempotent is not None:
                    idempotency.record(session, idempotent.key, answer.status, answer.body)
                for hook in self._in_transaction if written.changes else ():
                    hook(session, written.changes)
        except _Undone as undone:
            return undone.answer, []
        return answer, written.changes

    def _context(self) -> Context:
        return Context(self.config, limits.Budget(self.config.max_embedded_rows))

    def _purge_expired_keys(self) -> None:
        # In transactions of their own, before the write's: the purge holds no lock the write waits on.
        with self.db.session() as session:
            expired = idempotency.expired_keys(session)
        if expired:
            with self.db.session(write=True) as session:
                idempotency.delete_expired(session, expired)


def _owed(principal: Principal):
    """The key check a known key's request owes: sent with the scope's first statement (auth.KnownKeys)."""
    pending = principal.unconfirmed
    return pending.owed if pending is not None and not pending.confirmed else None


def _read(session: Session, read: Read, context: Context):
    return reads.run(session, read, context.budget)


def _explain(session: Session, explain: Explain, context: Context):
    return reads.explain(session, explain, context.budget)


class _Undone(Exception):
    """A write run with ``rollback``, carrying its answer out of the transaction that undoes it."""

    def __init__(self, answer: Any):
        super().__init__("rolled back")
        self.answer = answer


def _streamed(scope: ExitStack, first: bytes | None, chunks: Iterator[bytes]) -> Iterator[bytes]:
    with scope:
        if first is not None:
            yield first
            yield from chunks
