"""Idempotency-Key on every write: a retry replays the first response and applies nothing twice."""
from __future__ import annotations

import datetime as dt
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from envelope import assert_error, ok
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.engine import make_url

from tiddly import create_app
from tiddly.models import Book, IdempotencyKey

REPLAYED = "Idempotent-Replayed"


def keyed(client, method: str, path: str, key: str, body=None, **kwargs):
    return client.open(path, method=method, json=body, headers={"Idempotency-Key": key}, **kwargs)


def scalar(db_url: str, stmt):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(stmt).scalar_one()
    finally:
        engine.dispose()


def count(db_url: str, model) -> int:
    return scalar(db_url, select(func.count()).select_from(model))


def same_response(first, second) -> None:
    assert (second.status_code, second.get_data()) == (first.status_code, first.get_data())
    assert second.headers[REPLAYED] == "true" and REPLAYED not in first.headers


# -- retries -----------------------------------------------------------------------

def test_retry_returns_first_response_and_inserts_once(client, db_url):
    first = keyed(client, "POST", "/books", "k-1", {"title": "Dune", "author": "Herbert"})
    ok(first, 201)
    retry = keyed(client, "POST", "/books", "k-1", {"title": "Dune", "author": "Herbert"})
    same_response(first, retry)
    assert count(db_url, Book) == 1
    assert count(db_url, IdempotencyKey) == 1


def test_the_body_counts_by_value_not_by_spelling(client, db_url):
    first = keyed(client, "POST", "/books", "k-order", {"title": "Dune", "author": "Herbert", "year": 1965})
    raw = b'{ "year" : 1965,\n  "author":"Herbert", "title": "Dune" }'
    retry = client.post("/books", data=raw, content_type="application/json", headers={"Idempotency-Key": "k-order"})
    same_response(first, retry)
    assert count(db_url, Book) == 1


def test_without_a_key_every_post_applies(client, db_url):
    for _ in range(2):
        ok(client.post("/books", json={"title": "Dune", "author": "Herbert"}), 201)
    assert count(db_url, Book) == 2
    assert count(db_url, IdempotencyKey) == 0


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/books", {"title": "Dune", "author": "Someone else"}),   # another body
    ("POST", "/dual", {"title": "Dune", "author": "Herbert"}),         # another path
    ("PUT", "/books", {"id": 1, "title": "Dune", "author": "Herbert"}),  # another method
])
def test_the_same_key_for_another_request_is_409(client, db_url, method, path, body):
    ok(keyed(client, "POST", "/books", "k-reused", {"title": "Dune", "author": "Herbert"}), 201)
    body = assert_error(keyed(client, method, path, "k-reused", body), 409, "idempotency_key_reused")
    assert body["details"] == {"header": "Idempotency-Key"}
    assert count(db_url, Book) == 1


def test_keys_are_per_key_not_per_body(client, db_url):
    for key in ("k-a", "k-b"):
        ok(keyed(client, "POST", "/books", key, {"title": "Dune", "author": "Herbert"}), 201)
    assert count(db_url, Book) == 2


# -- every write verb ----------------------------------------------------------------

def test_bulk_post_retry_returns_the_same_ids(client, db_url):
    rows = [{"title": f"T{i}", "author": "A"} for i in range(5)]
    first = keyed(client, "POST", "/books", "k-bulk", rows)
    assert ok(first, 201)["ids"] == [1, 2, 3, 4, 5]
    same_response(first, keyed(client, "POST", "/books", "k-bulk", rows))
    assert count(db_url, Book) == 5


@pytest.mark.parametrize("path, body", [("/books", {"id": 7, "title": "Dune", "author": "Herbert"}),
                                        ("/books/7", {"title": "Dune", "author": "Herbert"})])
def test_put_retry_replays_the_create(client, db_url, path, body):
    first = keyed(client, "PUT", path, "k-put", body)
    ok(first, 201)
    retry = keyed(client, "PUT", path, "k-put", body)
    same_response(first, retry)  # a replay says 201, where a second PUT would say 200
    assert count(db_url, Book) == 1


def test_patch_retry_does_not_undo_a_later_change(client, db_url):
    ok(client.post("/books", json={"title": "Dune", "author": "Herbert"}), 201)
    first = keyed(client, "PATCH", "/books/1", "k-patch", {"title": "Dune Messiah"})
    ok(first, 200)
    ok(client.patch("/books/1", json={"title": "Children of Dune"}))
    retry = keyed(client, "PATCH", "/books/1", "k-patch", {"title": "Dune Messiah"})
    same_response(first, retry)
    assert retry.get_json()["data"]["title"] == "Dune Messiah"
    assert ok(client.get("/books/1"))["data"]["title"] == "Children of Dune"


@pytest.mark.parametrize("path, body", [("/books/1", None), ("/books", {"id": 1}),
                                        ("/books", {"where": {"author": "Herbert"}})])
def test_delete_retry_replays_instead_of_404(client, db_url, path, body):
    ok(client.post("/books", json={"title": "Dune", "author": "Herbert"}), 201)
    first = keyed(client, "DELETE", path, "k-delete", body)
    ok(first, 200)
    same_response(first, keyed(client, "DELETE", path, "k-delete", body))
    assert count(db_url, Book) == 0


def test_put_patients_retry_appends_one_reading(client, db_url):
    body = {"patient_mrn": 12345, "room_number": 3, "patient_name": "Ann", "CPAP_pressure": "12", "breath_rate": 14.5}
    created = keyed(client, "PUT", "/patients", "k-patient", body)
    ok(created, 201)
    appended = keyed(client, "PUT", "/patients", "k-reading", body)
    ok(appended, 200)
    same_response(appended, keyed(client, "PUT", "/patients", "k-reading", body))
    same_response(created, keyed(client, "PUT", "/patients", "k-patient", body))
    assert ok(client.get("/patient_readings?count=true&limit=0"))["count"] == 2
    assert_error(keyed(client, "PUT", "/patients?readings=1", "k-reading", body), 409, "idempotency_key_reused")


def test_reads_ignore_the_key(client, db_url):
    ok(keyed(client, "GET", "/books", "k-read"))
    ok(keyed(client, "FETCH", "/books", "k-read", {"where": {"year": 1}}))
    assert count(db_url, IdempotencyKey) == 0


# -- failures are not stored ---------------------------------------------------------

def test_an_error_response_is_not_stored_so_a_corrected_retry_applies(client, db_url):
    assert_error(keyed(client, "POST", "/books", "k-fix", {"title": "Dune"}), 400, "missing_column")
    assert count(db_url, IdempotencyKey) == 0
    fixed = keyed(client, "POST", "/books", "k-fix", {"title": "Dune", "author": "Herbert"})
    ok(fixed, 201)
    assert REPLAYED not in fixed.headers
    assert count(db_url, Book) == 1


def test_a_failed_write_leaves_neither_rows_nor_key(client, db_url):
    ok(client.post("/books", json={"title": "A", "author": "A", "isbn": "X"}), 201)
    rows = [{"title": "B", "author": "B"}, {"title": "C", "author": "C", "isbn": "X"}]
    assert_error(keyed(client, "POST", "/books", "k-conflict", rows), 409, "unique_violation")
    assert count(db_url, Book) == 1
    assert count(db_url, IdempotencyKey) == 0


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_bad_key_is_400_and_writes_nothing(client, db_url, key):
    response = client.post("/books", json={"title": "Dune", "author": "Herbert"}, headers={"Idempotency-Key": key})
    assert_error(response, 400, "bad_idempotency_key")
    assert count(db_url, Book) == 0


def test_a_255_character_key_works(client, db_url):
    key = "k" * 255
    first = keyed(client, "POST", "/books", key, {"title": "Dune", "author": "Herbert"})
    same_response(first, keyed(client, "POST", "/books", key, {"title": "Dune", "author": "Herbert"}))
    assert count(db_url, Book) == 1


def test_keys_are_case_sensitive(client, db_url):
    ok(keyed(client, "POST", "/books", "Key", {"title": "Dune", "author": "Herbert"}), 201)
    ok(keyed(client, "POST", "/books", "KEY", {"title": "Dune", "author": "Herbert"}), 201)
    assert count(db_url, Book) == 2


# -- expiry --------------------------------------------------------------------------

def _expire_all(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(IdempotencyKey).values(expires_at=dt.datetime(2000, 1, 1)))
    engine.dispose()


@pytest.fixture
def short_ttl_client(config):
    app = create_app(config.with_(idempotency_ttl_s=5))
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()


def test_the_ttl_comes_from_config(short_ttl_client, db_url):
    ok(keyed(short_ttl_client, "POST", "/books", "k-ttl", {"title": "Dune", "author": "Herbert"}), 201)
    row = _key_row(db_url, "k-ttl")
    assert row.expires_at - row.created_at == dt.timedelta(seconds=5)


def _key_row(db_url: str, key: str):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(IdempotencyKey).where(IdempotencyKey.key == key)).one()
    finally:
        engine.dispose()


def test_an_expired_key_applies_again(short_ttl_client, db_url):
    body = {"title": "Dune", "author": "Herbert"}
    first = keyed(short_ttl_client, "POST", "/books", "k-old", body)
    _expire_all(db_url)
    again = keyed(short_ttl_client, "POST", "/books", "k-old", body)
    ok(again, 201)
    assert REPLAYED not in again.headers and again.get_json()["id"] != first.get_json()["id"]
    assert count(db_url, Book) == 2
    same_response(again, keyed(short_ttl_client, "POST", "/books", "k-old", body))


def test_an_expired_key_may_carry_another_request(short_ttl_client, db_url):
    ok(keyed(short_ttl_client, "POST", "/books", "k-new-body", {"title": "Dune", "author": "Herbert"}), 201)
    _expire_all(db_url)
    ok(keyed(short_ttl_client, "PUT", "/books/9", "k-new-body", {"title": "Emma", "author": "Austen"}), 201)
    assert count(db_url, Book) == 2


def test_expired_keys_are_purged_by_the_next_keyed_write(short_ttl_client, db_url):
    for i in range(3):
        ok(keyed(short_ttl_client, "POST", "/dual", f"k-{i}", {"text": str(i)}), 201)
    _expire_all(db_url)
    ok(short_ttl_client.post("/dual", json={"text": "unkeyed"}), 201)
    assert count(db_url, IdempotencyKey) == 3  # only keyed writes purge
    ok(keyed(short_ttl_client, "POST", "/dual", "k-fresh", {"text": "fresh"}), 201)
    assert scalar(db_url, select(func.min(IdempotencyKey.key))) == "k-fresh"
    assert count(db_url, IdempotencyKey) == 1


# -- the table stays internal ----------------------------------------------------------

def test_the_key_table_is_not_exposed(client):
    ok(keyed(client, "POST", "/dual", "k-hidden", {"text": "x"}), 201)
    assert "idempotency_keys" not in {t["name"] for t in ok(client.get("/-/tables"))["data"]}
    assert_error(client.get("/idempotency_keys"), 404, "unknown_table")
    assert_error(client.post("/idempotency_keys", json={"key": "k"}), 404, "unknown_table")


# -- over real HTTP, many processes ------------------------------------------------------

def test_one_key_from_many_clients_and_workers_applies_once(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=4)
    body = {"title": "Once", "author": "Only"}
    start = threading.Barrier(8)

    def send(_):
        start.wait()
        return _post_new_connection(server.url, "k-live", body)

    with ThreadPoolExecutor(8) as pool:
        racing = list(pool.map(send, range(8)))
    sequential = [_post_new_connection(server.url, "k-live", body) for _ in range(24)]
    answers = racing + sequential

    assert {(status, text) for status, text, _ in answers} == {answers[0][:2]}
    assert answers[0][0] == 201
    assert sum(not replayed for _, _, replayed in answers) == 1
    counted = requests.get(server.url + "/books", params={"count": "true", "limit": "0"}).json()
    assert counted["count"] == 1
    assert len(_workers_with_a_database_connection(server, db_url)) >= 2


def test_distinct_keys_from_many_clients_each_apply_once(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=4)

    def client(number: int) -> list[tuple]:
        with requests.Session() as session:
            results = []
            for i in range(12):
                key, body = f"c{number}-{i}", {"text": f"c{number}-{i}"}
                first = session.post(server.url + "/dual", json=body, headers={"Idempotency-Key": key})
                retry = session.post(server.url + "/dual", json=body, headers={"Idempotency-Key": key})
                results.append((first.status_code, retry.status_code, first.text == retry.text,
                                retry.headers.get(REPLAYED)))
            return results

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(client, range(8)) for r in rs]
    assert set(results) == {(201, 201, True, "true")}
    counted = requests.get(server.url + "/dual", params={"count": "true", "limit": "0"}).json()
    assert counted["count"] == 8 * 12
    assert count(db_url, IdempotencyKey) == 8 * 12


def _post_new_connection(base: str, key: str, body: dict) -> tuple[int, str, bool]:
    response = requests.post(base + "/books", json=body, headers={"Idempotency-Key": key, "Connection": "close"})
    return response.status_code, response.text, response.headers.get(REPLAYED) == "true"


def _workers_with_a_database_connection(server, db_url: str) -> set[int]:
    """Gunicorn workers (children of the server process) that hold a connection to the database.

    Workers connect on their first request and keep the connection in their pool,
    so this names the workers that served requests, without the app exposing a pid.
    """
    workers = [pid for pid in _pids() if _parent(pid) == server.process.pid]
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = os.path.realpath(url.database)
        return {pid for pid in workers if path in _open_files(pid)}
    port = url.port or {"postgresql": 5432, "mysql": 3306}[url.get_backend_name()]
    inodes = _tcp_inodes_to_port(port)
    return {pid for pid in workers if any(f"socket:[{inode}]" in _open_files(pid) for inode in inodes)}


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _open_files(pid: int) -> set[str]:
    names = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return names


def _tcp_inodes_to_port(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes
