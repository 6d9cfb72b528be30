"""Group commit on SQLite (storage/groups.py), and what a write scope promises on every database.

On SQLite the writes of one process that queue for the writer's turn share one transaction and
one COMMIT, each under a savepoint of its own: one that fails rolls back alone, and every scope
exits only after the group's COMMIT, so nothing acknowledged can be lost (a kill -9 of the server
in the middle of groups, over real HTTP). PostgreSQL and MariaDB do not group: a write there never
waits for another's. On every database a write scope runs its after-commit callbacks once its work
is committed, and never for work rolled back.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, event, insert, select, text

from tiddly import create_app
from tiddly.config import Config
from tiddly.errors import DatabaseUnavailable, ForeignKeyViolation
from tiddly.models import Dual
from tiddly.storage import Database, after_commit, groups

DUAL = Dual.__table__


def _sqlite_db(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    db.create_all(Dual.metadata, tables=[DUAL])
    return db


def _count_commits(db: Database) -> list:
    commits = []
    event.listen(db._write_engine, "commit", lambda connection: commits.append(1))
    return commits


def _outside_texts(path: Path) -> set[str]:
    """The committed rows, as another program sees them."""
    connection = sqlite3.connect(path)
    try:
        return {row[0] for row in connection.execute("SELECT text FROM dual")}
    finally:
        connection.close()


def _write(db: Database, value: str, then=None) -> None:
    with db.session(write=True) as session:
        session.execute(insert(DUAL).values(text=value))
        if then is not None:
            then(session)


class _Group:
    """A writer that holds the writer's turn, and writers started while it holds it, queued behind
    it; release() lets them all go. Each writer's outcome: None, or the exception it raised."""

    def __init__(self, db: Database, holder_then=None):
        self.db, self.outcomes, self._threads = db, {}, []
        self._entered, self._release = threading.Event(), threading.Event()

        def hold(session):
            self._entered.set()
            assert self._release.wait(10)
            if holder_then is not None:
                holder_then(session)

        self._start("holder", hold)
        assert self._entered.wait(10)

    def queue(self, value: str, then=None) -> None:
        waiting = self.db._writers.threads.waiting()
        self._start(value, then)
        deadline = time.monotonic() + 10
        while self.db._writers.threads.waiting() <= waiting:  # queued at its first statement
            assert time.monotonic() < deadline, "the writer never queued"
            time.sleep(0.005)

    def release(self) -> dict:
        self._release.set()
        for thread in self._threads:
            thread.join(20)
        return self.outcomes

    def _start(self, value: str, then) -> None:
        def run():
            try:
                _write(self.db, value, then)
                self.outcomes[value] = None
            except BaseException as exc:  # noqa: BLE001 - the outcome under test
                self.outcomes[value] = exc
        thread = threading.Thread(target=run)
        self._threads.append(thread)
        thread.start()


@pytest.fixture
def patient_groups(monkeypatch):
    """Groups that take every writer that queued, however slow the machine."""
    monkeypatch.setattr(groups, "MAX_GROUP_S", 30)


def test_writes_that_queue_together_share_one_commit(tmp_path, patient_groups):
    db = _sqlite_db(tmp_path / "g.db")
    commits = _count_commits(db)
    group = _Group(db)
    for n in range(4):
        group.queue(f"w{n}")
    assert group.release() == {"holder": None, "w0": None, "w1": None, "w2": None, "w3": None}
    assert len(commits) == 1
    assert _outside_texts(tmp_path / "g.db") == {"holder", "w0", "w1", "w2", "w3"}
    db.dispose()


def test_a_write_that_fails_in_a_group_rolls_back_alone(tmp_path, patient_groups):
    db = _sqlite_db(tmp_path / "g.db")
    commits = _count_commits(db)
    group = _Group(db)
    group.queue("before")

    def fail(session):
        session.execute(insert(DUAL).values(text="also undone"))
        raise RuntimeError("this write fails after its statements")

    group.queue("undone", fail)
    group.queue("after")
    outcomes = group.release()
    assert isinstance(outcomes.pop("undone"), RuntimeError)
    assert outcomes == {"holder": None, "before": None, "after": None}
    assert len(commits) == 1
    assert _outside_texts(tmp_path / "g.db") == {"holder", "before", "after"}
    db.dispose()


def test_every_write_of_a_group_returns_only_once_all_of_it_is_committed(tmp_path, patient_groups):
    path = tmp_path / "g.db"
    db = _sqlite_db(path)
    seen = {}

    def look(name):
        return lambda session: after_commit(session, lambda: seen.setdefault(name, _outside_texts(path)))

    group = _Group(db, holder_then=look("holder"))
    for n in range(3):
        group.queue(f"w{n}", look(f"w{n}"))
    assert set(group.release().values()) == {None}
    everything = {"holder", "w0", "w1", "w2"}
    assert seen == {name: everything for name in everything}  # the first one too: it waited for the last
    db.dispose()


def test_a_group_as_old_as_the_limit_takes_no_new_write(tmp_path, monkeypatch):
    monkeypatch.setattr(groups, "MAX_GROUP_S", 0)
    db = _sqlite_db(tmp_path / "g.db")
    commits = _count_commits(db)
    group = _Group(db)
    for n in range(3):
        group.queue(f"w{n}")
    assert set(group.release().values()) == {None}
    assert len(commits) == 4
    db.dispose()


def test_when_sqlite_ends_the_transaction_itself_no_write_of_the_group_succeeds(tmp_path, patient_groups):
    """An interrupted INSERT inside a transaction makes SQLite roll back the whole transaction:
    the write that finished before it in the group must not be answered as a success."""
    db = _sqlite_db(tmp_path / "g.db")
    group = _Group(db)

    def interrupted(session):
        raw = session.connection().connection.dbapi_connection
        threading.Timer(0.3, raw.interrupt).start()
        session.execute(text("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                             "INSERT INTO dual (text) SELECT 'many' FROM n LIMIT 1000000000"))

    group.queue("interrupted", interrupted)
    outcomes = group.release()
    assert isinstance(outcomes["interrupted"], DatabaseUnavailable)
    assert isinstance(outcomes["holder"], DatabaseUnavailable)  # finished first, rolled back by SQLite all the same
    assert _outside_texts(tmp_path / "g.db") == set()
    _write(db, "later")  # the next group starts clean
    assert _outside_texts(tmp_path / "g.db") == {"later"}
    db.dispose()


def _deferred_schema(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY,"
        " parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);")
    connection.close()


def _child_of_nobody(session):
    session.execute(text("INSERT INTO child (parent_id) VALUES (424242)"))


def test_a_file_with_deferred_foreign_keys_commits_each_write_alone(tmp_path, patient_groups):
    """A deferred foreign key is checked at COMMIT: in a group, one write's violation would fail
    the others'. Each write then commits alone and keeps its own outcome."""
    path = tmp_path / "g.db"
    _deferred_schema(path)
    db = _sqlite_db(path)
    commits = _count_commits(db)
    group = _Group(db)
    group.queue("orphan", _child_of_nobody)
    group.queue("fine")
    outcomes = group.release()
    assert isinstance(outcomes.pop("orphan"), ForeignKeyViolation)
    assert outcomes == {"holder": None, "fine": None}
    assert len(commits) == 3  # each alone; the orphan's COMMIT is refused
    assert _outside_texts(path) == {"holder", "fine"}
    db.dispose()


def test_a_deferred_violation_met_at_a_group_commit_fails_the_group_then_writes_go_alone(tmp_path,
                                                                                          patient_groups):
    path = tmp_path / "g.db"
    db = _sqlite_db(path)
    _write(db, "first")  # the process has looked at the schema: no deferred key yet
    _deferred_schema(path)
    group = _Group(db)
    group.queue("orphan", _child_of_nobody)
    group.queue("fine")
    outcomes = group.release()
    assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes.values()), outcomes
    assert _outside_texts(path) == {"first"}
    group = _Group(db)  # from now on each alone: the orphan alone fails
    group.queue("orphan", _child_of_nobody)
    group.queue("fine")
    outcomes = group.release()
    assert isinstance(outcomes.pop("orphan"), ForeignKeyViolation)
    assert outcomes == {"holder": None, "fine": None}
    db.dispose()


# -- every database ----------------------------------------------------------------

@pytest.fixture
def database(db_url):
    app = create_app(Config(database_url=db_url))
    db = app.extensions["tiddly"].db
    yield db
    db.dispose()


def _committed_texts(db_url: str) -> set[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(select(DUAL.c.text)).scalars())
    finally:
        engine.dispose()


def test_after_commit_callbacks_run_once_the_write_is_committed_and_never_after_a_rollback(database, db_url):
    calls = []
    with database.session(write=True) as session:
        session.execute(insert(DUAL).values(text="kept"))
        after_commit(session, lambda: calls.append(("first", _committed_texts(db_url))))
        after_commit(session, lambda: calls.append(("second", threading.get_ident())))
        assert calls == []
    assert calls == [("first", {"kept"}), ("second", threading.get_ident())]

    with pytest.raises(RuntimeError):
        with database.session(write=True) as session:
            session.execute(insert(DUAL).values(text="undone"))
            after_commit(session, lambda: calls.append("never"))
            raise RuntimeError("rolled back")
    assert len(calls) == 2 and _committed_texts(db_url) == {"kept"}

    def broken():
        raise ValueError("a callback that fails")

    with pytest.raises(ValueError):
        with database.session(write=True) as session:
            session.execute(insert(DUAL).values(text="committed anyway"))
            after_commit(session, broken)
    assert _committed_texts(db_url) == {"kept", "committed anyway"}


def test_only_sqlite_makes_a_write_wait_for_another_in_the_process(database, db_url, patient_groups):
    """PostgreSQL and MariaDB take concurrent writers: a write commits and returns while another
    is still open. SQLite takes one writer: the second waits for the first, then both commit."""
    inside, release, second_done = threading.Event(), threading.Event(), threading.Event()
    seen_by_second = []

    def first():
        with database.session(write=True) as session:
            session.execute(insert(DUAL).values(text="first"))
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=first)
    holder.start()
    assert inside.wait(10)

    def second():
        _write(database, "second")
        seen_by_second.append(_committed_texts(db_url))
        second_done.set()

    writer = threading.Thread(target=second)
    writer.start()
    waited = not second_done.wait(1.0)
    release.set()
    holder.join(10)
    writer.join(10)
    if database.dialect_name == "sqlite":
        assert waited and seen_by_second == [{"first", "second"}]
    else:
        assert not waited and seen_by_second == [{"second"}]


# -- a kill -9 in the middle of groups, over real HTTP ------------------------------

WRITERS = 12
KILLS = 6


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found + [grandchild for child in found for grandchild in _descendants(child)]


def _kill_9(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _write_until_killed(server, round_: int, acknowledged: list, cut: list) -> None:
    """Writers post rows until one of them, the moment it reads the 400th acknowledgement of the
    round, kills every process of the server: the writes acknowledged just before are the ones a
    commit sent after its answer would lose."""
    target, killed = len(acknowledged) + 400, threading.Lock()
    processes = [*_descendants(server.process.pid), server.process.pid]  # the workers first

    def writer(n: int):
        http = requests.Session()
        for i in range(100_000):
            value = f"r{round_}-w{n}-{i}"
            try:
                response = http.post(server.url + "/dual", json={"text": value}, timeout=10)
            except requests.RequestException:
                cut.append(value)  # in flight when the server died
                return
            if response.status_code == 201:
                acknowledged.append((response.json()["id"], value))
            if len(acknowledged) >= target and killed.acquire(blocking=False):
                _kill_9(processes)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    server.process.wait(10)


def test_a_kill_9_in_the_middle_of_groups_loses_no_acknowledged_write(live_server_factory, tmp_path):
    path = tmp_path / "killed.db"
    acknowledged: list[tuple[int, str]] = []
    cut: list[str] = []
    for round_ in range(KILLS):
        server = live_server_factory(f"sqlite:///{path}", workers=2, threads=4)
        _write_until_killed(server, round_, acknowledged, cut)
        connection = sqlite3.connect(path)  # recovers the WAL as any program opening the file would
        stored = dict(connection.execute("SELECT id, text FROM dual").fetchall())
        connection.close()
        lost = [(pk, value) for pk, value in acknowledged if stored.get(pk) != value]
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    assert len(acknowledged) >= 400 * KILLS
    assert len(cut) >= KILLS  # each kill met requests in flight
