"""Writes through the PostgREST dialect as PostgREST answers them, on SQLite, PostgreSQL and
MariaDB, over real HTTP: an upsert's status, ``Prefer: tx=rollback``, rows without their key
under ``missing=default``, a generated key named in a POST, and a unique violation in
PostgreSQL's words (told only of columns the caller may read).
"""
from __future__ import annotations

import httpx
import pytest
from pgrst import Served, reflected, serving
from sqlalchemy import Column, Integer, MetaData, String, Table, UniqueConstraint

from tiddly.config import Config

AUTO_PK = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "SERIAL PRIMARY KEY",
           "mysql": "INT AUTO_INCREMENT PRIMARY KEY"}
REPRESENTATION = {"Prefer": "return=representation"}


def dialect_of(db_url: str) -> str:
    return db_url.split(":", 1)[0].split("+", 1)[0]


@pytest.fixture
def api(db_url):
    statements = [f"CREATE TABLE pw_notes (id {AUTO_PK[dialect_of(db_url)]}, slug VARCHAR(40) UNIQUE, "
                  "body VARCHAR(40) DEFAULT 'empty')",
                  "INSERT INTO pw_notes (slug, body) VALUES ('a', 'first'), ('b', 'second')"]
    with reflected(db_url, statements, ["pw_notes"]) as server:
        with httpx.Client(base_url=server.url + "/rest/v1") as client:
            yield client


def rows(client: httpx.Client) -> list[dict]:
    return client.get("/pw_notes?select=id,slug,body&order=id").json()


def test_an_upsert_that_only_merged_answers_200(api):
    merged = api.post("/pw_notes?on_conflict=slug", json=[{"slug": "a", "body": "again"}],
                      headers={"Prefer": "resolution=merge-duplicates, return=representation"})
    assert merged.status_code == 200, merged.text
    assert [row["body"] for row in merged.json()] == ["again"]
    one_new = api.post("/pw_notes?on_conflict=slug", json=[{"slug": "a", "body": "x"}, {"slug": "c", "body": "y"}],
                       headers={"Prefer": "resolution=merge-duplicates"})
    assert one_new.status_code == 201
    ignored = api.post("/pw_notes?on_conflict=slug", json=[{"slug": "a", "body": "ignored"}],
                       headers={"Prefer": "resolution=ignore-duplicates, return=representation"})
    assert (ignored.status_code, ignored.json()) == (201, [])


def test_tx_rollback_answers_the_write_and_keeps_nothing(api):
    before = rows(api)
    prefer = {"Prefer": "return=representation, tx=rollback"}
    made = api.post("/pw_notes?select=slug,body", json=[{"slug": "z", "body": "gone"}], headers=prefer)
    assert made.status_code == 201 and made.json() == [{"slug": "z", "body": "gone"}]
    assert "tx=rollback" in made.headers["Preference-Applied"]
    patched = api.patch("/pw_notes?slug=eq.a&select=body", json={"body": "gone"}, headers=prefer)
    assert patched.status_code == 200 and patched.json() == [{"body": "gone"}]
    deleted = api.delete("/pw_notes?slug=eq.b&select=slug", headers=prefer)
    assert deleted.status_code == 200 and deleted.json() == [{"slug": "b"}]
    assert rows(api) == before
    committed = api.patch("/pw_notes?slug=eq.a", json={"body": "kept"}, headers={"Prefer": "tx=commit"})
    assert committed.status_code == 204 and committed.headers["Preference-Applied"] == "tx=commit"
    assert rows(api)[0]["body"] == "kept"


def test_a_read_key_writes_nothing_even_to_roll_it_back(db_url):
    server = Served(Config(database_url=db_url))
    try:
        with httpx.Client(base_url=server.url + "/rest/v1") as client:
            client.post("/stores", json={"name": "North"})
            reader = server.key("reader", "read")
            response = client.post("/stores", json={"name": "South"},
                                   headers={"apikey": reader, "Prefer": "tx=rollback, return=representation"})
            assert response.status_code in (401, 403), response.text
            assert response.json()["code"] == "42501"
            assert client.get("/stores?select=name", headers={"apikey": reader}).json() == [{"name": "North"}]
    finally:
        server.stop()


def test_missing_default_lets_the_database_fill_an_upsert_rows_key(api):
    upserted = api.post("/pw_notes?columns=id,slug&select=slug,body", json=[{"id": 1, "slug": "a"}, {"slug": "c"}],
                        headers={"Prefer": "resolution=merge-duplicates, missing=default, return=representation"})
    assert upserted.status_code == 201, upserted.text
    assert upserted.json() == [{"slug": "a", "body": "first"}, {"slug": "c", "body": "empty"}]
    assert [row["slug"] for row in rows(api)] == ["a", "b", "c"]
    # without missing=default an absent key is null, which a key cannot be
    refused = api.post("/pw_notes?columns=id,slug", json=[{"id": 1, "slug": "a"}, {"slug": "d"}],
                       headers={"Prefer": "resolution=merge-duplicates"})
    assert refused.status_code == 400 and refused.json()["code"] == "23502"


def test_a_post_may_name_a_generated_key(api):
    made = api.post("/pw_notes?select=id,slug", json=[{"id": 100, "slug": "h"}, {"slug": "i"}],
                    headers={"Prefer": "missing=default, return=representation"})
    assert made.status_code == 201, made.text
    assert made.json()[0] == {"id": 100, "slug": "h"} and made.json()[1]["slug"] == "i"


def test_a_unique_violation_in_postgresqls_words(api):
    clash = api.post("/pw_notes", json={"slug": "a"})
    assert clash.status_code == 409
    assert clash.json()["code"] == "23505"
    assert clash.json()["details"] == "Key (slug)=(a) already exists."
    assert clash.json()["message"].startswith("duplicate key value violates unique constraint ")
    by_key = api.post("/pw_notes", json=[{"id": 1, "slug": "new"}])
    assert by_key.json()["details"] == "Key (id)=(1) already exists."
    assert by_key.json()["message"] in ('duplicate key value violates unique constraint "pw_notes_pkey"',
                                        'duplicate key value violates unique constraint "pw_notes_pkey1"')


def test_a_clash_on_a_hidden_column_names_no_value(db_url):
    metadata = MetaData()
    Table("pw_secrets", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)),
          Column("token", String(20), server_default="s3cret", info={"policy": "hidden"}),
          UniqueConstraint("name", "token", name="pw_secrets_name_token_key"))
    with serving(db_url, metadata) as server:
        with httpx.Client(base_url=server.url + "/rest/v1") as client:
            assert client.post("/pw_secrets", json={"name": "a"}).status_code == 201
            clash = client.post("/pw_secrets", json={"name": "a"})
            assert clash.status_code == 409 and clash.json()["code"] == "23505"
            assert clash.json()["details"] is None and "s3cret" not in clash.text
            assert client.post("/pw_secrets", json={"id": 1, "name": "b"}).json()["details"] == \
                "Key (id)=(1) already exists."


def test_postgresql_rows_lie_where_postgrest_would_leave_them(api, db_url):
    """With no order a read answers rows as the database reads them; on PostgreSQL a changed row
    moves to the end of the table, in the order the change read the rows (a plain UPDATE), and a
    merge rewrites the row it meets even when it changes nothing, as PostgREST's upsert does."""
    if dialect_of(db_url) != "postgresql":
        pytest.skip("where rows lie is PostgreSQL's")
    api.post("/pw_notes", json={"slug": "c"})
    unordered = lambda: [row["slug"] for row in api.get("/pw_notes?select=slug").json()]  # noqa: E731
    api.patch("/pw_notes?slug=eq.a", json={"body": "moved"})
    assert unordered() == ["b", "c", "a"]
    api.patch("/pw_notes?slug=neq.zzz", json={"body": "all"})  # read b, c, a: written b, c, a
    assert unordered() == ["b", "c", "a"]
    merged = api.post("/pw_notes?on_conflict=slug", json={"slug": "b"},
                      headers={"Prefer": "resolution=merge-duplicates"})
    assert merged.status_code == 200
    assert unordered() == ["c", "a", "b"]


def test_missing_default_writes_defaults_into_the_rows_an_upsert_merges(api):
    """?columns=slug,body with missing=default: a row that leaves body out writes body's default,
    into the row it merges with too, as PostgREST's INSERT ... DEFAULT ... ON CONFLICT DO UPDATE."""
    merged = api.post("/pw_notes?on_conflict=slug&columns=slug,body&select=slug,body",
                      json=[{"slug": "a"}, {"slug": "b", "body": "kept"}],
                      headers={"Prefer": "resolution=merge-duplicates, missing=default, return=representation"})
    assert merged.status_code == 200, merged.text
    assert merged.json() == [{"slug": "a", "body": "empty"}, {"slug": "b", "body": "kept"}]
