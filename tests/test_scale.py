"""Outgrowing one machine, with the real parts started here (tests/cluster.py): a PostgreSQL
primary, a streaming standby made with pg_basebackup, PgBouncer in transaction mode, and HAProxy
in front of two `tiddly serve`. Every guarantee is checked through HTTP.

One primary, standby and PgBouncer serve the whole session; each test has a database of its own
on them, and leaves the parts running and replaying as it found them.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import subprocess
import sys
import time
import uuid

import cluster
import psycopg
import pytest
import requests
from conftest import ROOT, cannot_run

from tiddly.services import auth
from tiddly.storage import CannotOpen, Database


@pytest.fixture(scope="session")
def parts():
    missing = cluster.missing_tools()
    if missing:
        cannot_run(f"the scale-out tests need Debian's {', '.join(missing)} (apt-get install {' '.join(missing)})",
                   "scale-out")
    with cluster.Replicated.start() as started:
        yield started


@pytest.fixture
def database(parts) -> str:
    """A database of this test's own, on the primary and replayed on the standby."""
    name = f"scale_{uuid.uuid4().hex[:10]}"
    parts.database(name)
    yield name
    if not parts.primary.running:
        parts.primary.start()
    if not parts.standby.running:
        parts.standby.start()
    parts.standby.resume_replay()


def serve(live_server_factory, url: str, *args: str, workers: int = 1, wait: bool = True, env=None):
    return live_server_factory(url, workers=workers, threads=4, extra_args=list(args), wait=wait, env=env)


def new_key(url: str, name: str, scope: str = "write") -> dict:
    """A key made in the database, as `tiddly keys create` makes it; the headers that send it."""
    db = Database(url)
    try:
        with db.session(write=True) as session:
            secret = auth.create_key(session, name, scope)
    finally:
        db.dispose()
    return {"Authorization": f"Bearer {secret}"}


def book(n: int | str) -> dict:
    return {"title": f"Book {n}", "author": "A. Writer"}


def health(server) -> dict:
    return requests.get(server.url + "/-/health", timeout=10).json()


def wait_for(condition, timeout: float = 15, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not hold within {timeout} s")


# -- read replicas -----------------------------------------------------------------------

def test_reads_go_to_the_replica_and_a_client_sees_its_own_writes_while_it_lags(parts, database,
                                                                                 live_server_factory):
    url = parts.primary.url(database)
    server = serve(live_server_factory, url, "--read-replica", parts.standby.url(database),
                   "--replica-max-lag", "60")
    writer, other = new_key(url, "writer"), new_key(url, "other")
    assert health(server)["replicas"][0]["state"] == "up"

    parts.standby.pause_replay()
    created = requests.post(server.url + "/books", json=book(1), headers=writer, timeout=10)
    assert created.status_code == 201, created.text
    row = f"{server.url}/books/{created.json()['id']}"
    # Its own write, on its next read, though the replica has not replayed it: from the primary.
    assert requests.get(row, headers=writer, timeout=10).status_code == 200
    listed = requests.get(server.url + "/books", headers=writer, timeout=10).json()["data"]
    assert [b["title"] for b in listed] == ["Book 1"]
    postgrest = requests.get(server.url + "/rest/v1/books?select=title", headers=writer, timeout=10)
    assert postgrest.json() == [{"title": "Book 1"}]
    # Another client reads from the replica, which is within the bound (60 s) and has not replayed it.
    assert requests.get(row, headers=other, timeout=10).status_code == 404
    assert requests.get(server.url + "/books", headers=other, timeout=10).json()["data"] == []
    # A login token is a writer of its own (its check converts the expiry: the typed path).
    person = {"email": "w@example.org", "password": "a long password"}
    assert requests.post(server.url + "/user", json={**person, "name": "W"}, headers=writer, timeout=10).ok
    token = requests.post(server.url + "/-/login", json=person, timeout=30).json()["token"]
    made = requests.post(server.url + "/books", json=book(2), headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    mine = f"{server.url}/books/{made.json()['id']}"
    assert requests.get(mine, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    assert requests.get(mine, headers=other, timeout=10).status_code == 404

    parts.standby.resume_replay()
    parts.standby.wait_caught_up(parts.primary)
    wait_for(lambda: requests.get(row, headers=other, timeout=10).status_code == 200, what="the replayed row")


def test_a_replica_further_behind_than_the_bound_answers_no_read(parts, database, live_server_factory):
    url = parts.primary.url(database)
    server = serve(live_server_factory, url, "--read-replica", parts.standby.url(database),
                   "--replica-max-lag", "1")
    writer, other = new_key(url, "writer"), new_key(url, "other")
    parts.standby.pause_replay()
    created = requests.post(server.url + "/books", json=book(1), headers=writer, timeout=10)
    row = f"{server.url}/books/{created.json()['id']}"
    lag = wait_for(lambda: (health(server)["replicas"][0]["lag_s"] or 0) > 1 and health(server)["replicas"][0],
                   what="a replica lag above 1 s")
    assert lag["state"] == "up"
    # The replica still answers, but is too far behind: another client's read goes to the primary.
    for _ in range(5):
        assert requests.get(row, headers=other, timeout=10).status_code == 200


def test_a_replica_that_is_down_is_skipped_without_an_error(parts, database, live_server_factory):
    url = parts.primary.url(database)
    server = serve(live_server_factory, url, "--read-replica", parts.standby.url(database), "--replica-max-lag", "60")
    writer, other = new_key(url, "writer"), new_key(url, "other")
    created = requests.post(server.url + "/books", json=book(1), headers=writer, timeout=10)
    parts.standby.wait_caught_up(parts.primary)
    row = f"{server.url}/books/{created.json()['id']}"
    for _ in range(8):  # the replica's connections are in the pool now
        assert requests.get(row, headers=other, timeout=10).status_code == 200

    parts.standby.stop()
    statuses = [requests.get(row, headers=other, timeout=10).status_code for _ in range(20)]
    statuses += [requests.get(server.url + "/books", headers=other, timeout=10).status_code for _ in range(5)]
    assert statuses == [200] * 25
    assert health(server)["replicas"][0]["state"] == "down"

    parts.standby.start()
    wait_for(lambda: health(server)["replicas"][0]["state"] == "up", what="the replica back up")


def test_with_the_primary_down_reads_come_from_the_replica_writes_are_a_503_and_resume(parts, database,
                                                                                        live_server_factory):
    url = parts.primary.url(database)
    server = serve(live_server_factory, url, "--read-replica", parts.standby.url(database), "--replica-max-lag", "60")
    writer = new_key(url, "writer")
    created = requests.post(server.url + "/books", json=book(1), headers=writer, timeout=10)
    row = f"{server.url}/books/{created.json()['id']}"
    parts.standby.wait_caught_up(parts.primary)

    parts.primary.stop()
    assert requests.get(row, headers=writer, timeout=10).json()["data"]["title"] == "Book 1"
    assert requests.get(server.url + "/books", headers=writer, timeout=10).json()["data"][0]["title"] == "Book 1"
    refused = requests.post(server.url + "/books", json=book(2), headers=writer, timeout=10)
    assert refused.status_code == 503
    assert refused.json()["code"] == "database_unavailable"
    assert refused.json()["details"] == {"cause": "primary_down"}
    assert refused.headers["Retry-After"] == "1"
    assert "primary" in refused.json()["error"]
    state = requests.get(server.url + "/-/health", timeout=10)
    assert state.status_code == 200 and state.json()["primary"] == "down"

    parts.primary.start()  # no restart of Tiddly: the next write goes through
    again = requests.post(server.url + "/books", json=book(2), headers=writer, timeout=10)
    assert again.status_code == 201, again.text
    assert requests.get(f"{server.url}/books/{again.json()['id']}", headers=writer, timeout=10).status_code == 200


# -- PgBouncer in transaction mode -----------------------------------------------------------

def _mixed_requests(base: str, worker: int, rounds: int) -> list[tuple[str, int]]:
    answers = []
    with requests.Session() as http:
        for n in range(rounds):
            created = http.post(base + "/books", json=book(f"{worker}-{n}"), timeout=30)
            answers.append(("POST", created.status_code))
            if created.status_code != 201:
                continue
            row = f"{base}/books/{created.json()['id']}"
            answers.append(("GET", http.get(row, timeout=30).status_code))
            answers.append(("PATCH", http.patch(row, json={"year": 1900 + n}, timeout=30).status_code))
            answers.append(("FETCH", http.request("FETCH", base + "/books", json={
                "where": {"author": "A. Writer"}, "orderby": "id desc", "limit": 5}, timeout=30).status_code))
            answers.append(("GET list", http.get(base + "/rest/v1/books?select=id,title&limit=3",
                                                 timeout=30).status_code))
            if n % 2:
                answers.append(("DELETE", http.delete(row, timeout=30).status_code))
    return answers


def test_tiddly_serves_through_pgbouncer_in_transaction_mode(parts, database, live_server_factory):
    refused = subprocess.run([sys.executable, "-m", "tiddly", "serve", "--port", "1",
                              "--database-url", parts.bouncer.url(database, pooler=False)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "?pooler=transaction" in refused.stderr and "Traceback" not in refused.stderr

    # A PgBouncer told to drop `options` lets Tiddly connect without the flag, where psycopg's prepared
    # statements then fail under load and no timeout holds: refused at start, with the same hint.
    lenient = cluster.PgBouncer(parts.primary, {"ignore_startup_parameters": "options"})
    try:
        refused = subprocess.run([sys.executable, "-m", "tiddly", "serve", "--port", "1",
                                  "--database-url", lenient.url(database, pooler=False)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        lenient.stop()
    assert refused.returncode != 0
    assert "?pooler=transaction" in refused.stderr and "Traceback" not in refused.stderr

    server = serve(live_server_factory, parts.pooled_url(database), workers=2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(itertools.chain.from_iterable(pool.map(lambda w: _mixed_requests(server.url, w, 7), range(8))))
    assert len(answers) > 200
    assert [a for a in answers if a[1] >= 300] == []
    # Nothing outlived a transaction on a server connection: no advisory lock (the schema lock at
    # start), and every server connection PgBouncer holds is idle, in no transaction.
    assert parts.primary.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", database=database) \
        == [(0,)]
    states = parts.primary.sql("SELECT state FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                               (database,))
    assert states and {s for (s,) in states} == {"idle"}


def test_the_statement_timeout_holds_through_pgbouncer(parts, database, live_server_factory):
    server = serve(live_server_factory, parts.pooled_url(database), env={"TIDDLY_STATEMENT_TIMEOUT_MS": "500"})
    with psycopg.connect(parts.primary.url(database).replace("+psycopg", "")) as locker:
        locker.execute("LOCK TABLE books IN ACCESS EXCLUSIVE MODE")  # reads and writes of books wait on it
        started = time.monotonic()
        read = requests.get(server.url + "/books", timeout=30)
        write = requests.post(server.url + "/books", json=book(1), timeout=30)
        took = time.monotonic() - started
        locker.rollback()
    assert (read.status_code, read.json()["code"]) == (504, "statement_timeout")
    assert (write.status_code, write.json()["code"]) == (504, "statement_timeout")
    assert took < 10
    assert requests.post(server.url + "/books", json=book(1), timeout=30).status_code == 201


def test_what_outlives_a_transaction_needs_the_direct_url(parts, database):
    pooled = Database(parts.pooled_url(database))
    with pytest.raises(CannotOpen, match="--direct-database-url"):
        with pooled.direct_connection():
            pass
    pooled.dispose()
    db = Database(parts.pooled_url(database), direct_url=parts.primary.url(database))
    try:
        with db.direct_connection() as connection:  # what a change feed does: LISTEN, then wait
            connection.exec_driver_sql("LISTEN tiddly_test")
            connection.commit()
            parts.primary.sql("NOTIFY tiddly_test, 'hello'", database=database)
            raw = connection.connection.dbapi_connection
            notice = next(raw.notifies(timeout=5, stop_after=1))
            assert notice.payload == "hello"
    finally:
        db.dispose()


# -- several instances behind a load balancer -------------------------------------------------

def test_two_instances_behind_haproxy_are_one_service(parts, database, live_server_factory):
    pooled, replica, direct = parts.pooled_url(database), parts.standby.url(database), parts.primary.url(database)
    args = ("--read-replica", replica, "--replica-max-lag", "60", "--direct-database-url", direct)
    # Started together on an empty database: they take turns on the schema lock, through PgBouncer.
    instances = [serve(live_server_factory, pooled, *args, wait=False) for _ in range(2)]
    for instance in instances:
        instance.wait_ready()
    balancer = cluster.HAProxy([instance.url for instance in instances])
    try:
        writer, other = new_key(direct, "writer"), new_key(direct, "other")
        served = {requests.get(balancer.url + "/books", headers=other, timeout=10).headers["X-Tiddly-Server"]
                  for _ in range(4)}
        assert served == {"a", "b"}

        # An Idempotency-Key replays on the other instance.
        retry = {**writer, "Idempotency-Key": "one-book"}
        first = requests.post(balancer.url + "/books", json=book(1), headers=retry, timeout=10)
        second = requests.post(balancer.url + "/books", json=book(1), headers=retry, timeout=10)
        assert first.headers["X-Tiddly-Server"] != second.headers["X-Tiddly-Server"]
        assert (first.status_code, second.status_code) == (201, 201)
        assert second.headers.get("Idempotent-Replayed") == "true" and second.json() == first.json()

        # Read-your-writes across instances while the replica lags: written through one, read through the other.
        parts.standby.pause_replay()
        created = requests.post(balancer.url + "/books", json=book(2), headers=writer, timeout=10)
        read = requests.get(f"{balancer.url}/books/{created.json()['id']}", headers=writer, timeout=10)
        assert created.headers["X-Tiddly-Server"] != read.headers["X-Tiddly-Server"]
        assert read.status_code == 200

        # A key revoked (while the replica has not replayed the revocation) is refused by both at once.
        subprocess.run([sys.executable, "-m", "tiddly", "keys", "revoke", "--database-url", pooled, "other"],
                       cwd=ROOT, check=True, capture_output=True, timeout=60)
        refused = [requests.get(balancer.url + "/books", headers=other, timeout=10) for _ in range(2)]
        assert {r.headers["X-Tiddly-Server"] for r in refused} == {"a", "b"}
        assert [r.status_code for r in refused] == [401, 401]
    finally:
        parts.standby.resume_replay()
        balancer.stop()


def test_a_pooler_or_replicas_a_database_cannot_have_are_refused_in_one_line(tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'tiddly.db'}"
    with pytest.raises(CannotOpen, match=r"\?pooler=transaction, on a PostgreSQL URL"):
        Database(sqlite + "?pooler=transaction")
    with pytest.raises(CannotOpen, match=r"Tiddly knows \?pooler=transaction"):
        Database("postgresql://app@127.0.0.1:1/app?pooler=session")
    with pytest.raises(CannotOpen, match="PostgreSQL streaming standbys"):
        Database(sqlite, replicas=["postgresql://app@127.0.0.1:1/app"])
    with pytest.raises(CannotOpen, match="directly, not through a pooler"):
        Database("postgresql://app@127.0.0.1:1/app?pooler=transaction",
                 direct_url="postgresql://app@127.0.0.1:1/app?pooler=transaction")
