"""Every door the app serves, with every verb-renaming header: a read key writes nothing.

What a request may do is decided from what it does, never from its verb or a header that
renames it (issue 20 item 1: a read key wrote through /rest/v1 with X-HTTP-Method-Override).
The routes are listed from ``app.url_map``, so a route added later is tried too; a write key
sending the same requests proves that the bodies are ones that do write.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from tiddly import create_app
from tiddly.cli import main
from tiddly.config import Config

RENAMING_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
VERBS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "FETCH", "QUERY", "OPTIONS")
BOOK = {"id": 1, "title": "Written", "author": "Someone"}
PATIENT = {"patient_mrn": 7, "room_number": 12, "patient_name": "X", "CPAP_pressure": 9, "breath_rate": 12.5,
           "apnea_count": 1, "flow_image": ""}
# A value for each URL variable of the app's rules.
ARGUMENTS = {"table": "books", "pk": "1", "room": "12", "value": "18", "name": "fn", "rest": "books/x",
             "filename": "app.js"}


def _key(db_url: str, name: str, scope: str, tables: str | None = None) -> str:
    args = ["keys", "create", "--name", name, "--scope", scope, "--database-url", db_url]
    result = CliRunner().invoke(main, args + (["--tables", tables] if tables else []))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def gateway(db_url):
    app = create_app(Config(database_url=db_url))
    client = app.test_client()
    assert client.post("/books", json={"title": "Kept", "author": "A"}).status_code == 201
    assert client.post("/user", json={"email": "a@example.com", "password": "pw", "name": "A"}).status_code == 201
    assert client.put("/patients", json=PATIENT).status_code == 201
    yield app
    app.extensions["tiddly"].db.dispose()


def _digest(app) -> str:
    """Every row of every exposed table, as one hash: any write changes it."""
    gateway = app.extensions["tiddly"]
    engine = create_engine(gateway.db.engine.url)
    try:
        with engine.connect() as connection:
            tables = {name: sorted(map(repr, connection.execute(select(spec.table))))
                      for name, spec in sorted(gateway.registry.tables.items())}
    finally:
        engine.dispose()
    return hashlib.sha256(json.dumps(tables).encode()).hexdigest()


def _doors(app) -> list[tuple[str, str]]:
    """(rule, concrete path) for every route of the app."""
    doors = []
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for argument in rule.arguments:
            assert argument in ARGUMENTS, f"route {rule.rule} has a variable this test cannot fill: {argument}"
            path = path.replace(f"<path:{argument}>", ARGUMENTS[argument]).replace(f"<{argument}>", ARGUMENTS[argument])
        doors.append((rule.rule, path))
    return doors


def _request(client, method: str, path: str, headers: dict, query: str = ""):
    """The request a client that means to write would send on ``path``, with ``method``."""
    rest = "/rest/v1/" in path
    if path == "/add_patient":
        body = PATIENT
    elif path == "/patients" or path.startswith("/patients/"):
        body = {**PATIENT, "patient_name": "Renamed"} if method != "DELETE" else {"room_number": 12}
    elif method == "DELETE":
        body = None if rest else {"id": 1}
    elif method == "PATCH":
        body = {"title": "Patched"}
    elif method in ("FETCH", "QUERY"):
        body = {}
    else:
        body = {**BOOK, "title": f"{method} {path}"}
    if rest and method in ("PATCH", "DELETE", "PUT", "GET", "HEAD"):
        path += "?id=eq.1"
    if isinstance(body, dict) and method == "POST" and path != "/add_patient":  # an insert names no id
        body = {k: v for k, v in body.items() if k != "id"}
    if query:
        path += ("&" if "?" in path else "?") + query
    return client.open(path, method=method, json=body, headers=headers)


def _combinations():
    """(extra headers, query string) of a request: none, each renaming header with each verb,
    a lower-case override, and the ``_method`` parameter some frameworks read."""
    yield {}, ""
    for header in RENAMING_HEADERS:
        for verb in VERBS:
            yield {header: verb}, ""
    yield {"X-HTTP-Method-Override": "fetch"}, ""
    for verb in ("POST", "PUT", "DELETE"):
        yield {}, f"_method={verb}"


def test_a_read_key_writes_through_no_door_whatever_renames_the_verb(gateway, db_url):
    reader = _key(db_url, "reader", "read")
    limited = _key(db_url, "limited-reader", "read", "books")
    client = gateway.test_client()
    before = _digest(gateway)
    for rule, path in _doors(gateway):
        for method in VERBS:
            for extra, query in _combinations():
                for key in (reader, limited):
                    response = _request(client, method, path, {"Authorization": f"Bearer {key}", **extra}, query)
                    assert response.status_code < 500, (rule, method, extra, response.get_data(as_text=True))
        assert _digest(gateway) == before, f"a read key wrote through {rule}"


def test_the_same_requests_with_a_write_key_do_write(gateway, db_url):
    """The control: the bodies and paths above are ones that write, so the test above can fail."""
    writer = _key(db_url, "writer", "write")
    client = gateway.test_client()
    wrote = set()
    for rule, path in _doors(gateway):
        for method in ("POST", "PUT", "PATCH", "DELETE", "GET"):
            before = _digest(gateway)
            _request(client, method, path, {"Authorization": f"Bearer {writer}"})
            if _digest(gateway) != before:
                wrote.add((method, rule))
    expected = {("POST", "/<table>"), ("PUT", "/<table>/<path:pk>"), ("PATCH", "/<table>/<path:pk>"),
                ("POST", "/rest/v1/<table>"), ("PATCH", "/rest/v1/<table>"), ("PUT", "/rest/v1/<table>"),
                ("POST", "/add_patient"), ("GET", "/new_cpap_pressure/<room>/<value>")}
    assert expected <= wrote, expected - wrote


def test_the_reported_attack_over_http_is_refused(db_url, live_server_factory):
    """The issue's probes, over real HTTP against `tiddly serve`: a read key (and one limited to
    books) POSTs to /rest/v1 with X-HTTP-Method-Override: FETCH, upserts over a row, and creates
    or resets a user whose login would have write scope. Each is a 403 and nothing is stored."""
    server = live_server_factory(db_url, workers=1, threads=2)
    writer = {"Authorization": f"Bearer {_key(db_url, 'w', 'write')}"}
    assert requests.post(server.url + "/user", json={"email": "b@example.com", "password": "old"},
                         headers=writer).status_code == 201
    assert requests.post(server.url + "/books", json={"title": "T", "author": "A"}, headers=writer).status_code == 201
    for key in (_key(db_url, "r", "read"), _key(db_url, "rb", "read", "books,user")):
        reader = {"Authorization": f"Bearer {key}", "X-HTTP-Method-Override": "FETCH"}
        probes = [
            ("/rest/v1/books", {"title": "Stored", "author": "Mallory"}, {}),
            ("/rest/v1/books?on_conflict=id", {"id": 1, "title": "Overwritten", "author": "M"},
             {"Prefer": "resolution=merge-duplicates"}),
            ("/rest/v1/user", {"email": "mallory@example.com", "password": "x"}, {}),
            ("/rest/v1/user?on_conflict=email", {"email": "b@example.com", "password": "reset"},
             {"Prefer": "resolution=merge-duplicates"}),
        ]
        for path, body, headers in probes:
            response = requests.post(server.url + path, json=body, headers={**reader, **headers})
            assert response.status_code == 403, (path, response.status_code, response.text)
            assert response.json()["code"] == "42501"
    books = requests.get(server.url + "/books", headers=writer).json()["data"]
    assert [(b["id"], b["title"]) for b in books] == [(1, "T")]
    users = requests.get(server.url + "/user", headers=writer).json()["data"]
    assert [u["email"] for u in users] == ["b@example.com"]
    login = requests.post(server.url + "/-/login", json={"email": "b@example.com", "password": "old"})
    assert login.status_code == 200  # the password was not reset


def test_native_doors_keep_key_scope(gateway, db_url):
    """Paths answered outside Flask (``web/native.py``: the change feed) are doors too: a key limited
    to books cannot listen to another table, no key is a 401 once keys exist, and no verb writes."""
    native = gateway.extensions.get("tiddly.native", {})
    assert ("http", "/-/changes") in native
    limited = _key(db_url, "limited-listener", "read", "books")
    client = gateway.test_client()
    before = _digest(gateway)
    for kind, path in native:
        if kind != "http":
            continue
        assert client.get(path + "?tables=user").status_code == 401
        refused = client.get(path + "?tables=user", headers={"Authorization": f"Bearer {limited}"})
        assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
        unknown = client.get(path + "?tables=nope", headers={"Authorization": f"Bearer {limited}"})
        assert unknown.status_code == 403  # a limited key learns nothing of other names
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = client.open(path + "?tables=books", method=method, json=BOOK,
                                   headers={"Authorization": f"Bearer {limited}"})
            assert response.status_code == 405, (path, method)
    assert _digest(gateway) == before
