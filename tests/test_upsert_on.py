"""PUT /<table>?on=<unique columns>: insert or update by a unique key, one statement per request."""
from __future__ import annotations

import pytest
from envelope import assert_error, ok
from sqlalchemy import event
from sqlalchemy.engine import Engine


def put(client, table, on, body):
    return client.put(f"/{table}?on={on}", json=body)


def test_one_object_inserts_then_updates(client):
    first = ok(put(client, "user", "email", {"email": "ann@example.com", "name": "Ann", "password": "pw1"}))
    assert first["data"] == {"id": 1, "email": "ann@example.com", "name": "Ann"}
    second = ok(put(client, "user", "email", {"email": "ann@example.com", "name": "Anne"}))
    assert second == {"status": "success", "id": 1, "data": {"id": 1, "email": "ann@example.com", "name": "Anne"}}
    assert ok(client.get("/user?count=true"))["count"] == 1


def test_an_array_mixes_inserts_and_updates_and_keeps_unsent_columns(client):
    ok(put(client, "books", "isbn", {"isbn": "111", "title": "Old", "author": "A", "year": 1990}))
    body = ok(put(client, "books", "isbn", [
        {"isbn": "222", "title": "Two", "author": "B"},
        {"isbn": "111", "title": "New", "author": "A"},
    ]))
    assert body["count"] == 2
    assert [(r["isbn"], r["title"], r["year"]) for r in body["data"]] == [("222", "Two", None), ("111", "New", 1990)]
    assert ok(client.get("/books?count=true"))["count"] == 2


def test_only_the_key_changes_nothing(client):
    ok(put(client, "user", "email", {"email": "bo@example.com", "name": "Bo"}))
    assert ok(put(client, "user", "email", {"email": "bo@example.com"}))["data"]["name"] == "Bo"


def test_primary_key_is_a_unique_key(client):
    ok(put(client, "dual", "id", [{"id": 5, "text": "five"}, {"id": 6, "text": "six"}]))
    assert ok(put(client, "dual", "id", {"id": 5, "text": "FIVE"}))["data"] == {"id": 5, "text": "FIVE"}
    assert [r["text"] for r in ok(client.get("/dual"))["data"]] == ["FIVE", "six"]


def test_one_insert_statement_for_many_rows(app, client):
    seen = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT") and "books" in statement:
            seen.append(statement)

    engine = Engine  # every engine: a request's write scope runs on the pooled one, beside db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        rows = [{"isbn": f"i{n}", "title": f"t{n}", "author": "x"} for n in range(200)]
        ok(put(client, "books", "isbn", rows))
        ok(put(client, "books", "isbn", [{**r, "title": "again"} for r in rows]))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(seen) == 2
    assert {r["title"] for r in ok(client.get("/books?limit=1000"))["data"]} == {"again"}


@pytest.mark.parametrize("on, code", [("author", "bad_query"), ("title,author", "bad_query"),
                                      ("id,isbn", "bad_query"), ("", "bad_query"), ("nope", "unknown_column")])
def test_a_column_set_that_is_not_unique_is_400(client, on, code):
    assert_error(put(client, "books", on, {"isbn": "1", "title": "t", "author": "a"}), 400, code)


def test_bad_rows_are_400s_and_write_nothing(client):
    cases = [
        ([{"isbn": "1", "title": "t", "author": "a"}, {"isbn": "1", "title": "u", "author": "a"}], "bad_value", 1),
        ([{"isbn": "1", "title": "t", "author": "a"}, {"title": "u", "author": "a"}], "missing_column", 1),
        ([{"isbn": "1", "title": "t", "author": "a"}, {"isbn": "2", "title": 5, "author": "a"}], "bad_value", 1),
        ([{"isbn": "1", "title": "t"}], "missing_column", 0),
    ]
    for rows, code, index in cases:
        body = assert_error(put(client, "books", "isbn", rows), 400, code)
        assert body["details"]["index"] == index
    for bad in ([], 5, "x"):
        assert_error(put(client, "books", "isbn", bad), 400, "bad_value")
    assert ok(client.get("/books?count=true"))["count"] == 0


def test_a_clash_on_another_unique_key_is_409_and_changes_nothing(client):
    """MariaDB's ON DUPLICATE KEY reacts to any unique key: the row named 99 clashes with Ann's email,
    and must not update Ann's row, as PostgreSQL and SQLite refuse it; the PostgREST dialect too,
    whether it merges or ignores duplicates."""
    ok(put(client, "user", "email", [{"email": "ann@example.com", "name": "Ann"}, {"email": "bo@example.com"}]))
    before = ok(client.get("/user?orderby=id"))["data"]
    clash = [{"id": 99, "email": "ann@example.com", "name": "Not Ann"}]
    assert_error(put(client, "user", "id", clash), 409, "unique_violation")
    for resolution in ("merge-duplicates", "ignore-duplicates"):
        answer = client.post("/rest/v1/user", json=clash, headers={"Prefer": f"resolution={resolution}"})
        assert (answer.status_code, answer.get_json()["code"]) == (409, "23505"), answer.get_data(as_text=True)
    assert ok(client.get("/user?orderby=id"))["data"] == before
