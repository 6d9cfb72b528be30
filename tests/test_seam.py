"""One seam (DESIGN section 10, issue 21): every write of every way in goes through the app's
executor, which hands exactly the committed changes to what registered for them; the registry
is built once and never written while requests run."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from envelope import assert_error, ok

from tiddly import create_app
from tiddly.cli import main
from tiddly.config import Config
from tiddly.services import auth

PATIENT = {"patient_mrn": 7, "room_number": 12, "patient_name": "Ann", "CPAP_pressure": 9, "breath_rate": 12.5,
           "apnea_count": 1, "flow_image": ""}


@pytest.fixture
def hooked(db_url):
    """An app whose executor records what its change hooks receive, in the transaction and after."""
    app = create_app(Config(database_url=db_url))
    seen = {"in_transaction": [], "after_commit": []}

    def in_transaction(session, changes):
        assert session.in_transaction()
        seen["in_transaction"].append([(c.table, c.op, c.key) for c in changes])

    app.extensions["tiddly"].executor.on_changes(
        in_transaction, lambda changes: seen["after_commit"].append([(c.table, c.op, c.key) for c in changes]))
    yield app.test_client(), seen
    app.extensions["tiddly"].db.dispose()


def _committed(seen) -> list:
    assert seen["in_transaction"] == seen["after_commit"]
    committed = seen["after_commit"][:]
    seen["in_transaction"].clear()
    seen["after_commit"].clear()
    return committed


def test_tiddly_api_writes_hand_over_their_changes(hooked):
    client, seen = hooked
    ok(client.post("/books", json={"title": "Dune", "author": "Herbert", "isbn": "i1"}), 201)
    ok(client.post("/books", json=[{"title": "Emma", "author": "Austen"}, {"title": "Ubik", "author": "Dick"}]), 201)
    ok(client.patch("/books/2", json={"year": 1815}))
    ok(client.put("/books/9", json={"title": "New", "author": "A"}), 201)
    upserted = ok(client.put("/books?on=isbn", json=[{"isbn": "i1", "title": "Dune!", "author": "H"},
                                                     {"isbn": "i2", "title": "Other", "author": "O"}]))
    other = upserted["data"][1]["id"]  # PostgreSQL's ON CONFLICT spends a sequence value on each row
    ok(client.delete("/books/3"))
    ok(client.delete("/books", json={"where": {"title": {"like": "%!"}}}))
    ok(client.post("/stores", json={"name": "S", "items": [{"name": "tea", "price": 1.5}]}), 201)
    response = client.post("/dual", data=b"text\na\nb\n", headers={"Content-Type": "text/csv"})
    ok(response, 201)
    assert _committed(seen) == [
        [("books", "insert", (1,))],
        [("books", "insert", (2,)), ("books", "insert", (3,))],
        [("books", "update", (2,))],
        [("books", "insert", (9,))],
        [("books", "update", (1,)), ("books", "insert", (other,))],
        [("books", "delete", (3,))],
        [("books", "delete", (1,))],
        [("stores", "insert", (1,)), ("items", "insert", (1,))],
        [("dual", "insert", (1,)), ("dual", "insert", (2,))],
    ]


def test_postgrest_and_monitor_writes_hand_over_their_changes(hooked):
    client, seen = hooked
    assert client.post("/rest/v1/books", json={"title": "Dune", "author": "Herbert"}).status_code == 201
    assert client.patch("/rest/v1/books?id=eq.1", json={"year": 1965}).status_code == 204
    assert client.put("/rest/v1/books?id=eq.5", json={"id": 5, "title": "T", "author": "A"}).status_code == 201
    assert client.post("/rest/v1/books?on_conflict=id", json=[{"id": 5, "title": "U", "author": "A"}],
                       headers={"Prefer": "resolution=merge-duplicates"}).status_code == 200  # merged only
    assert client.delete("/rest/v1/books?id=eq.5").status_code == 204
    ok(client.put("/patients", json=PATIENT), 201)
    assert client.post("/add_patient", json={**PATIENT, "CPAP_pressure": "10"}).status_code == 200
    assert client.get("/new_cpap_pressure/12/18").status_code == 200
    changes = _committed(seen)
    assert changes[:5] == [[("books", "insert", (1,))], [("books", "update", (1,))], [("books", "insert", (5,))],
                           [("books", "update", (5,))], [("books", "delete", (5,))]]
    assert changes[5] == [("patients", "insert", (12,)), ("patient_readings", "insert", (1,))]
    assert changes[6] == [("patients", "update", (12,)), ("patient_readings", "insert", (2,))]
    assert changes[7] == [("patients", "update", (12,))]


def test_writes_that_roll_back_hand_over_nothing(hooked):
    client, seen = hooked
    ok(client.post("/books", json={"title": "Dune", "author": "Herbert", "isbn": "i1"}), 201)
    _committed(seen)
    assert_error(client.post("/books", json={"title": "Again", "author": "H", "isbn": "i1"}), 409, "unique_violation")
    assert_error(client.post("/books", json=[{"title": "A", "author": "B"}, {"title": "C", "author": "D",
                                                                              "isbn": "i1"}]), 409, "unique_violation")
    two_as_one = client.post("/rest/v1/books", json=[{"title": "A", "author": "B"}, {"title": "C", "author": "D"}],
                             headers={"Accept": "application/vnd.pgrst.object+json", "Prefer": "return=representation"})
    assert two_as_one.status_code == 406  # rendered in the transaction, which rolls back
    assert client.patch("/rest/v1/books?id=eq.1", json={"title": "X"},
                        headers={"Prefer": "handling=strict, max-affected=0"}).status_code == 400
    assert seen == {"in_transaction": [], "after_commit": []}
    assert [b["title"] for b in ok(client.get("/books"))["data"]] == ["Dune"]


def test_a_hook_that_fails_in_the_transaction_undoes_the_write(db_url):
    app = create_app(Config(database_url=db_url))
    after = []

    def refuse(_session, _changes):
        raise RuntimeError("the change log is full")

    app.extensions["tiddly"].executor.on_changes(refuse, after.append)
    client = app.test_client()
    assert client.post("/books", json={"title": "Dune", "author": "Herbert"}).status_code == 500
    assert ok(client.get("/books"))["data"] == [] and after == []
    app.extensions["tiddly"].db.dispose()


def test_the_command_line_import_goes_through_the_executor(db_url, tmp_path, monkeypatch):
    """`tiddly import` builds the app the server would and runs an Import through its executor."""
    seen = []
    original = create_app
    original(Config(database_url=db_url)).extensions["tiddly"].db.dispose()  # the tables exist

    def hooked_app(*args, **kwargs):
        app = original(*args, **kwargs)
        app.extensions["tiddly"].executor.on_changes(after_commit=seen.append)
        return app

    monkeypatch.setattr("tiddly.cli.transfer.create_app", hooked_app)
    data = tmp_path / "dual.csv"
    data.write_text("text\nx\ny\n")
    result = CliRunner().invoke(main, ["import", "dual", str(data), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert [[(c.table, c.op, c.key) for c in changes] for changes in seen] == [
        [("dual", "insert", (1,)), ("dual", "insert", (2,))]]


def test_the_registry_is_built_once_and_no_request_writes_it(db_url):
    app = create_app(Config(database_url=db_url))
    gateway = app.extensions["tiddly"]
    registry = gateway.registry
    before = {name: (spec, dict(spec.relations)) for name, spec in registry.tables.items()}
    with gateway.db.session(write=True) as session:
        limited = auth.create_key(session, "items only", "read", ["items", "stores"])
        books = auth.create_key(session, "books only", "write", ["books"])
    client = app.test_client()
    for key in (limited, books):
        headers = {"Authorization": f"Bearer {key}"}
        client.get("/items?include=store", headers=headers)
        client.get("/rest/v1/stores?select=*,items(*)", headers=headers)
        client.get("/-/tables", headers=headers)
        client.get("/rest/v1/", headers=headers)
    assert gateway.registry is registry
    assert {name: (spec, dict(spec.relations)) for name, spec in registry.tables.items()} == before
    seen_by_limited = registry.view(frozenset({"items", "stores"}))
    assert seen_by_limited is registry.view(frozenset({"items", "stores"}))  # made once per set of tables
    assert set(seen_by_limited.tables) == {"items", "stores"}
    assert all(relation.target in {"items", "stores"}
               for spec in seen_by_limited.tables.values() for relation in spec.relations.values())
    assert registry.view(frozenset({"books"})).tables["books"].relations == {}
    gateway.db.dispose()
