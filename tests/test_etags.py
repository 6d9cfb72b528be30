"""Row ETags and conditional writes (issue 15, item 8), on every database: PUT, PATCH and DELETE
by key honour If-Match and If-None-Match, checked on the row locked in the write's own transaction."""
from __future__ import annotations

import threading

import pytest
import requests
from envelope import assert_error, ok

DUNE = {"title": "Dune", "author": "Frank Herbert", "year": 1965}


@pytest.fixture
def dune(client) -> str:
    """Book 1, and its ETag."""
    created = client.post("/books", json=DUNE)
    ok(created, 201)
    return created.headers["ETag"]


def test_a_row_answers_its_etag_on_every_read_and_write(client, dune):
    get = client.get("/books/1")
    assert get.headers["ETag"] == dune and client.head("/books/1").headers["ETag"] == dune
    assert dune.startswith('"') and dune.endswith('"') and len(dune) == 34
    patched = client.patch("/books/1", json={"year": 1966})
    assert patched.headers["ETag"] not in (None, dune)
    assert client.get("/books/1").headers["ETag"] == patched.headers["ETag"]
    put = client.put("/books/1", json={"year": 1965})
    assert put.headers["ETag"] == dune  # the same values, the same ETag
    assert "ETag" not in client.delete("/books/1").headers


def test_if_match_writes_only_the_row_it_names(client, dune):
    stale = client.patch("/books/1", json={"year": 1966}).headers["ETag"]
    current = ok(client.get("/books/1"))["data"]
    client.patch("/books/1", json={"year": 1967})
    now = client.get("/books/1").headers["ETag"]
    for method, body in (("PATCH", {"year": 1}), ("PUT", {"year": 1}), ("DELETE", None)):
        for tag in (stale, dune, '"no-such-etag"', f"W/{now}", ""):
            response = client.open("/books/1", method=method, json=body, headers={"If-Match": tag})
            assert_error(response, 412, "precondition_failed")
    assert ok(client.get("/books/1"))["data"] == {**current, "year": 1967}
    ok(client.patch("/books/1", json={"year": 1968}, headers={"If-Match": f'{stale}, {now}'}))
    ok(client.put("/books/1", json={"year": 1969}, headers={"If-Match": "*"}))
    ok(client.delete("/books/1", headers={"If-Match": client.get("/books/1").headers["ETag"]}))


def test_if_match_on_a_missing_row(client):
    assert_error(client.put("/books/5", json=DUNE, headers={"If-Match": "*"}), 412, "precondition_failed")
    assert_error(client.get("/books/5"), 404, "not_found")  # not created
    assert_error(client.patch("/books/5", json={"year": 1}, headers={"If-Match": "*"}), 404, "not_found")
    assert_error(client.delete("/books/5", headers={"If-Match": "*"}), 404, "not_found")


def test_if_none_match(client, dune):
    assert_error(client.put("/books/1", json={"year": 1}, headers={"If-None-Match": "*"}), 412,
                 "precondition_failed")
    ok(client.put("/books/2", json=DUNE | {"isbn": "2"}, headers={"If-None-Match": "*"}), 201)
    for tag in (dune, f"W/{dune}"):  # If-None-Match compares weakly
        assert_error(client.patch("/books/1", json={"year": 1}, headers={"If-None-Match": tag}), 412,
                     "precondition_failed")
    ok(client.patch("/books/1", json={"year": 1}, headers={"If-None-Match": '"another"'}))
    ok(client.put("/books", json={"id": 3, **DUNE}, headers={"If-None-Match": "*"}), 201)  # the key in the body
    assert_error(client.delete("/books", json={"id": 3}, headers={"If-Match": dune}), 412, "precondition_failed")


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/books", DUNE),
    ("DELETE", "/books", {"where": {"year": 1965}}),
    ("PUT", "/books?on=isbn", {**DUNE, "isbn": "9"}),
    ("PUT", "/patients", {"room_number": 1, "patient_mrn": 2}),
])
def test_a_condition_on_a_write_that_is_not_by_key_is_refused(client, dune, method, path, body):
    body_ = assert_error(client.open(path, method=method, json=body, headers={"If-Match": dune}), 400, "bad_query")
    assert "one row by its key" in body_["error"]
    assert [row["id"] for row in ok(client.get("/books"))["data"]] == [1]


THREADS, INCREMENTS = 8, 50


def test_read_modify_write_with_if_match_loses_no_update(db_url, live_server_factory):
    """8 clients x 50 increments of one counter over real HTTP, each a GET then a PATCH with If-Match,
    retried on 412: every increment is kept (without If-Match, 69 to 77 of 400 were)."""
    server = live_server_factory(db_url, workers=2, threads=4)
    assert requests.post(server.url + "/books", json={**DUNE, "year": 0}).status_code == 201
    errors, retries = [], []

    def increment():
        session = requests.Session()
        done = 0
        while done < INCREMENTS:
            read = session.get(server.url + "/books/1", timeout=30)
            year = read.json()["data"]["year"]
            write = session.patch(server.url + "/books/1", json={"year": year + 1},
                                  headers={"If-Match": read.headers["ETag"]}, timeout=30)
            if write.status_code == 200:
                done += 1
            elif write.status_code == 412:
                retries.append(1)
            else:
                errors.append((write.status_code, write.text))
                return

    threads = [threading.Thread(target=increment) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert requests.get(server.url + "/books/1").json()["data"]["year"] == THREADS * INCREMENTS
    assert retries  # the clients did race
