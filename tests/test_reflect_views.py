"""`--reflect` serves views: read-only, or written where the database says the view can be."""
from __future__ import annotations

import pytest
import requests
from conftest import DATABASES, drop_state_home, server_url
from envelope import assert_error, ok
from sqlalchemy import create_engine, text

from tiddly import create_app, schema
from tiddly.config import Config

AUTO_PK = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "SERIAL PRIMARY KEY",
           "mysql": "INT AUTO_INCREMENT PRIMARY KEY"}
VIEWS = ("shelf", "living_writers", "books_per_writer", "ghost_titles")
TABLES = ("novels", "writers")
ALL = VIEWS + TABLES


def _ddl(dialect: str) -> list[str]:
    return [
        f"CREATE TABLE writers (id {AUTO_PK[dialect]}, name VARCHAR(60) NOT NULL, born INTEGER)",
        f"CREATE TABLE novels (id {AUTO_PK[dialect]}, writer_id INTEGER NOT NULL REFERENCES writers (id), "
        "title VARCHAR(100) NOT NULL, pages INTEGER DEFAULT 100)",
        # One table under it, every column one of the table's (the key renamed): PostgreSQL and
        # MariaDB write it; SQLite writes no view.
        "CREATE VIEW shelf AS SELECT id AS book, title, writer_id, pages FROM novels",
        # Writable on PostgreSQL; on MariaDB a constant column keeps it from inserting (it still
        # updates and deletes). The constant is never written.
        "CREATE VIEW living_writers AS SELECT id, name, born, 1 AS alive FROM writers WHERE born > 1900",
        # An aggregate: no database writes it.
        "CREATE VIEW books_per_writer AS SELECT writer_id, COUNT(*) AS books FROM novels GROUP BY writer_id",
        # A view on a view on the table.
        "CREATE VIEW ghost_titles AS SELECT book, title FROM shelf",
    ]


def _drop(conn) -> None:
    quote = conn.dialect.identifier_preparer.quote
    for name in reversed(VIEWS):  # a view before the view it is built on
        conn.execute(text(f"DROP VIEW IF EXISTS {quote(name)}"))
    for name in TABLES:
        conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)}"))


@pytest.fixture(params=DATABASES)
def views_db(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'views.db'}" if request.param == "sqlite" else server_url(request.param)
    if request.param != "sqlite":
        drop_state_home(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        _drop(conn)
        for statement in _ddl(conn.dialect.name):
            conn.execute(text(statement))
        conn.execute(text("INSERT INTO writers (name, born) VALUES ('Octavia', 1947), ('Mary', 1797)"))
        conn.execute(text("INSERT INTO novels (writer_id, title) VALUES (1, 'Kindred'), (2, 'Frankenstein'), "
                          "(1, 'Dawn')"))
    yield url
    with engine.begin() as conn:
        _drop(conn)
    engine.dispose()


@pytest.fixture
def views_client(views_db):
    engine = create_engine(views_db)
    found = schema.reflected(engine, tables=ALL)
    engine.dispose()
    app = create_app(Config(database_url=views_db), found.metadata, found.registry)
    yield app.test_client()
    app.extensions["tiddly"].db.dispose()


def _dialect(url: str) -> str:
    return url.split(":")[0].split("+")[0]


def _verbs(client) -> dict:
    return {t["name"]: t["verbs"] for t in ok(client.get("/-/tables"))["data"]}


READS = ["GET", "FETCH", "QUERY"]
WRITES = ["POST", "PUT", "PATCH", "DELETE"]


def test_views_are_served_with_the_writes_their_database_allows(views_client, views_db):
    client, dialect = views_client, _dialect(views_db)
    verbs = _verbs(client)
    assert verbs["books_per_writer"] == READS
    expected = {"sqlite": (READS, READS, READS),
                "postgresql": (READS + WRITES, READS + WRITES, READS + WRITES),
                # MariaDB inserts through a view only whole rows of its table: not with a
                # constant column, nor leaving out a column the table needs (writer_id).
                "mysql": (READS + WRITES, READS + ["PATCH", "DELETE"], READS + ["PATCH", "DELETE"])}[dialect]
    assert (verbs["shelf"], verbs["living_writers"], verbs["ghost_titles"]) == expected

    rows = ok(client.open("/shelf", method="FETCH", json={"orderby": "book"}))["data"]
    assert [(r["book"], r["title"]) for r in rows] == [(1, "Kindred"), (2, "Frankenstein"), (3, "Dawn")]
    counts = ok(client.open("/books_per_writer", method="FETCH", json={"orderby": "writer_id"}))["data"]
    assert [(r["writer_id"], r["books"]) for r in counts] == [(1, 2), (2, 1)]
    assert ok(client.get("/living_writers"))["data"] == [{"id": 1, "name": "Octavia", "born": 1947, "alive": 1}]
    assert_error(client.post("/books_per_writer", json={"writer_id": 1}), 405, "method_not_allowed")


def test_a_writable_view_writes_its_table_by_the_tables_key(views_client, views_db):
    client = views_client
    if _dialect(views_db) == "sqlite":
        response = client.post("/shelf", json={"title": "Parable", "writer_id": 1})
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["Allow"] == "GET, HEAD, FETCH, QUERY, OPTIONS"
        return
    made = ok(client.post("/shelf", json={"title": "Parable", "writer_id": 1}), 201)
    assert made["data"] == {"book": made["id"], "title": "Parable", "writer_id": 1, "pages": 100}
    assert_error(client.post("/shelf", json={"writer_id": 1}), 400, "missing_column")  # title: NOT NULL
    assert ok(client.patch(f"/shelf/{made['id']}", json={"pages": 320}))["data"]["pages"] == 320
    assert ok(client.get(f"/ghost_titles/{made['id']}"))["data"] == {"book": made["id"], "title": "Parable"}
    assert ok(client.delete(f"/shelf/{made['id']}"))["id"] == made["id"]
    assert_error(client.get(f"/shelf/{made['id']}"), 404, "not_found")
    assert_error(client.patch("/living_writers/1", json={"alive": 0}), 400, "read_only_column")
    assert ok(client.patch("/living_writers/1", json={"name": "Octavia E."}))["data"]["name"] == "Octavia E."


def test_postgrest_reads_and_writes_a_view(views_client, views_db):
    client, writable = views_client, _dialect(views_db) != "sqlite"
    got = client.get("/rest/v1/shelf?select=book,title&writer_id=eq.1&order=book.desc")
    assert got.status_code == 200 and got.get_json() == [{"book": 3, "title": "Dawn"}, {"book": 1, "title": "Kindred"}]
    patched = client.patch("/rest/v1/shelf?book=eq.2", json={"pages": 280}, headers={"Prefer": "return=representation"})
    if not writable:
        assert patched.status_code == 405 and patched.get_json()["code"] == "PGRST117"
        return
    assert patched.status_code == 200 and patched.get_json()[0]["pages"] == 280
    assert client.get("/novels/2").get_json()["data"]["pages"] == 280  # the table itself changed
    refused = client.post("/rest/v1/books_per_writer", json={"writer_id": 1, "books": 9})
    assert refused.status_code == 405 and refused.get_json()["code"] == "PGRST117"


def test_a_view_has_the_relations_of_the_columns_it_shows(views_client, views_db):
    client = views_client
    # novels.writer_id -> writers.id; living_writers shows writers.id, shelf shows novels.writer_id.
    to_view = client.get("/rest/v1/novels?select=title,living_writers(name)&order=id")
    from_view = client.get("/rest/v1/shelf?select=title,writers(name)&book=eq.2")
    many = client.get("/rest/v1/living_writers?select=name,novels(title)")
    if _dialect(views_db) == "sqlite":  # SQLite does not say where a view's columns come from
        for response in (to_view, from_view, many):
            assert response.status_code == 400 and response.get_json()["code"] == "PGRST200"
        return
    assert to_view.status_code == 200, to_view.get_data(as_text=True)
    assert to_view.get_json() == [{"title": "Kindred", "living_writers": {"name": "Octavia"}},
                                  {"title": "Frankenstein", "living_writers": None},
                                  {"title": "Dawn", "living_writers": {"name": "Octavia"}}]
    assert from_view.get_json() == [{"title": "Frankenstein", "writers": {"name": "Mary"}}]
    (octavia,) = many.get_json()
    assert sorted(n["title"] for n in octavia["novels"]) == ["Dawn", "Kindred"]


def test_serve_reflect_a_view_without_its_table(views_db, live_server_factory):
    server = live_server_factory(views_db, extra_args=("--reflect", "--tables", "shelf,books_per_writer"))
    names = {t["name"] for t in requests.get(server.url + "/-/tables").json()["data"]}
    assert names == {"shelf", "books_per_writer"}
    assert requests.get(server.url + "/novels").json()["code"] == "unknown_table"
    created = requests.post(server.url + "/rest/v1/shelf", json={"title": "Wild Seed", "writer_id": 1},
                            headers={"Prefer": "return=representation"})
    if _dialect(views_db) == "sqlite":
        assert created.status_code == 405
    else:
        assert created.status_code == 201, created.text
        assert created.json() == [{"book": 4, "title": "Wild Seed", "writer_id": 1, "pages": 100}]
    counts = requests.get(server.url + "/rest/v1/books_per_writer?writer_id=eq.1").json()
    assert counts == [{"writer_id": 1, "books": 2 if _dialect(views_db) == "sqlite" else 3}]


def test_a_view_whose_table_is_gone_is_left_out_not_the_database(views_db):
    engine = create_engine(views_db)
    dialect = _dialect(views_db)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP VIEW IF EXISTS stale"))
            conn.execute(text("DROP TABLE IF EXISTS gone"))
            conn.execute(text("CREATE TABLE gone (id INTEGER PRIMARY KEY)"))
            conn.execute(text("CREATE VIEW stale AS SELECT id FROM gone"))
        if dialect == "postgresql":  # PostgreSQL keeps no view whose table is gone
            with pytest.raises(Exception, match="depend"), engine.begin() as conn:
                conn.execute(text("DROP TABLE gone"))
            return
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE gone"))  # SQLite and MariaDB keep the view
        found = schema.reflected(engine, tables=None)
        assert "shelf" in found.registry.tables and "stale" not in found.registry.tables
        with pytest.raises(schema.SchemaError, match="the view stale cannot be read"):
            schema.reflected(engine, tables=["shelf", "stale"])
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP VIEW IF EXISTS stale"))
            conn.execute(text("DROP TABLE IF EXISTS gone"))
        engine.dispose()
