"""GET /-/openapi.json and `tiddly openapi`: an OpenAPI 3.1 document generated from the registry."""
from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlencode

import requests
from openapi_spec_validator import OpenAPIV31SpecValidator
from serving import ROOT
from sqlalchemy import create_engine, text

from tiddly import create_app, schema
from tiddly.config import Config
from tiddly.errors import ERROR_CODES
from tiddly.services.query import OPERATORS

MODELS = '''
from sqlalchemy import Boolean, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    secret_hash: Mapped[str | None] = mapped_column(String(100), info={"policy": "hidden"})
    password: Mapped[str | None] = mapped_column(String(255), info={"policy": "write_only_hashed"})
    created: Mapped[str | None] = mapped_column(String(40), info={"policy": "read_only"})
    balance: Mapped[float | None] = mapped_column(Numeric(10, 2))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
'''


def _served(app) -> dict:
    response = app.test_client().get("/-/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def _assert_valid(doc: dict) -> None:
    errors = [e.message for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


def test_shipped_document_is_valid_openapi_31(sqlite_url):
    app = create_app(Config(database_url=sqlite_url))
    doc = _served(app)
    app.extensions["tiddly"].db.dispose()
    assert doc["openapi"].startswith("3.1")
    _assert_valid(doc)
    for table in ("user", "dual", "books", "stores", "items"):
        assert {"get", "post", "put", "delete"} <= set(doc["paths"][f"/{table}"])
        assert {"get", "put", "patch", "delete"} <= set(doc["paths"][f"/{table}/{{pk}}"])
    schemas = doc["components"]["schemas"]
    assert schemas["Error"]["properties"]["code"]["enum"] == list(ERROR_CODES)
    where_email = schemas["user.where"]["properties"]["email"]["oneOf"][2]["properties"]
    assert list(where_email) == list(OPERATORS)
    assert schemas["books.insert"]["required"] == ["title", "author"]
    assert schemas["books"]["properties"]["year"]["type"] == ["integer", "null"]
    assert schemas["books"]["properties"]["title"] == {"type": "string", "maxLength": 255}
    post = doc["paths"]["/books"]["post"]
    assert post["parameters"][0]["name"] == "X-HTTP-Method-Override"
    assert {"200", "201", "400", "404", "409", "503"} <= set(post["responses"])


def test_column_policies_show_in_the_schemas(tmp_path, sqlite_url):
    path = tmp_path / "accounts.py"
    path.write_text(MODELS)
    loaded = schema.from_models_file(path)
    app = create_app(Config(database_url=sqlite_url), loaded.metadata, loaded.registry)
    doc = _served(app)
    app.extensions["tiddly"].db.dispose()
    _assert_valid(doc)
    row = doc["components"]["schemas"]["accounts"]["properties"]
    assert "secret_hash" not in row  # hidden
    assert row["password"]["writeOnly"] is True
    assert row["created"]["readOnly"] is True and row["id"]["readOnly"] is True
    assert row["active"] == {"type": "boolean"}
    insert = doc["components"]["schemas"]["accounts.insert"]
    assert set(insert["properties"]) == {"email", "password", "balance", "active"}
    assert insert["required"] == ["email"]
    assert "secret_hash" not in doc["components"]["schemas"]["accounts.where"]["properties"]
    assert list(doc["paths"]) == ["/-/health", "/-/tables", "/-/whoami", "/-/openapi.json", "/accounts",
                                  "/accounts/{pk}"]


def test_reflected_document_with_awkward_names_is_valid(tmp_path):
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text('CREATE TABLE "order" (id INTEGER PRIMARY KEY, "my col" TEXT)'))
        conn.execute(text("CREATE TABLE pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b))"))
        conn.execute(text("CREATE TABLE log (message TEXT)"))
    found = schema.reflected(engine)
    engine.dispose()
    app = create_app(Config(database_url=url), found.metadata, found.registry)
    doc = _served(app)
    app.extensions["tiddly"].db.dispose()
    _assert_valid(doc)
    assert "my col" in doc["components"]["schemas"]["order"]["properties"]
    assert "comma-separated" in doc["paths"]["/pairs/{pk}"]["parameters"][0]["description"]
    assert set(doc["paths"]["/log"]) == {"get", "post"} and "/log/{pk}" not in doc["paths"]
    assert doc["paths"]["/log"]["post"]["parameters"][0]["required"] is True  # only the FETCH override


def test_cli_prints_the_served_document(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    printed = subprocess.run([sys.executable, "-m", "tiddly", "openapi", "--database-url", url],
                             cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    app = create_app(Config(database_url=url))
    served = _served(app)
    app.extensions["tiddly"].db.dispose()
    assert json.loads(printed) == served


def test_bearer_security_when_keys_are_required(sqlite_url):
    app = create_app(Config(database_url=sqlite_url, open_mode_allowed=False))
    gateway = app.extensions["tiddly"]
    from tiddly.tiddly import (
        openapi_document,  # what GET /-/openapi.json returns (the route itself needs a key now)
    )
    doc = json.loads(json.dumps(openapi_document(gateway)))
    gateway.db.dispose()
    _assert_valid(doc)
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearer": []}]


def test_no_security_scheme_in_open_mode(sqlite_url):
    app = create_app(Config(database_url=sqlite_url))
    doc = _served(app)
    app.extensions["tiddly"].db.dispose()
    assert "securitySchemes" not in doc["components"] and "security" not in doc


def test_a_request_line_too_long_for_the_server_is_a_documented_414(sqlite_url, live_server_factory):
    server = live_server_factory(sqlite_url, workers=1, threads=1)
    long_titles = [f"a title long enough to make the whole list long, number {i:04}" for i in range(1000)]
    where = {"title": {"in": long_titles}}
    query = urlencode({"where": json.dumps(where)})
    assert len(query) > 65_535  # past what granian reads (gunicorn's limit is lower)
    response = requests.get(f"{server.url}/books?{query}", timeout=10)
    assert response.status_code == 414
    operation = requests.get(server.url + "/-/openapi.json", timeout=10).json()["paths"]["/books"]["get"]
    assert "414" in operation["responses"]
    fetched = requests.request("FETCH", server.url + "/books", json={"where": where}, timeout=10)
    assert fetched.status_code == 200 and fetched.json()["data"] == []  # the way the document points to
