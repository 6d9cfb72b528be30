"""`--models FILE`: a user's own declarative models, and the README's example run as written."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from envelope import assert_error, ok
from serving import ROOT, free_port, tiddly_command, wait_healthy

from tiddly import create_app, schema
from tiddly.config import Config


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_readme_models_example_works_as_written(tmp_path):
    section = _readme_section("Your own models")
    (code,) = _blocks(section, "python")
    assert len(code.strip().splitlines()) <= 14
    (shell,) = _blocks(section, "sh")
    serve_line, *curl_lines = [line for line in shell.strip().splitlines()]
    models_name = re.search(r"--models (\S+)", serve_line).group(1)
    (tmp_path / models_name).write_text(code)

    port = free_port()
    argv = shlex.split(serve_line)
    assert argv[:2] == ["tiddly", "serve"]
    process = subprocess.Popen([tiddly_command(), *argv[1:], "--port", str(port)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        outputs = [json.loads(subprocess.run(shlex.split(line.replace("localhost:5000", f"127.0.0.1:{port}")),
                                             capture_output=True, text=True, check=True).stdout)
                   for line in curl_lines]
    finally:
        process.terminate()
        log = process.communicate(timeout=15)[0]
    assert outputs[0]["status"] == "success" and outputs[0]["id"] == 1, outputs
    assert outputs[1] == {"status": "success", "data": {"id": 1, "body": "hello"}}  # the pin is write-only
    assert "1 table (" in log and (tmp_path / "notes.db").exists()


MODELS = '''
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)

class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))

class Internal(Base):
    __tablename__ = "internal"
    id: Mapped[int] = mapped_column(primary_key=True)

TIDDLY_TABLES = ["authors", "audit"]
TIDDLY_READ_ONLY = ["audit"]
'''


def test_models_file_options_choose_and_restrict_tables(tmp_path, sqlite_url):
    path = tmp_path / "my_models.py"
    path.write_text(MODELS)
    loaded = schema.from_models_file(path)
    assert set(loaded.registry.tables) == {"authors", "audit"} and loaded.managed
    app = create_app(Config(database_url=sqlite_url), loaded.metadata, loaded.registry)
    client = app.test_client()
    try:
        assert ok(client.post("/authors", json={"name": "Le Guin"}), 201)["id"] == 1
        assert_error(client.post("/authors", json={"name": "Le Guin"}), 409, "unique_violation")
        assert_error(client.post("/audit", json={"author_id": 1}), 405, "method_not_allowed")
        assert ok(client.get("/audit"))["data"] == []
        assert_error(client.get("/internal"), 404, "unknown_table")
        assert_error(client.get("/books"), 404, "unknown_table")  # the shipped models are not served
    finally:
        app.extensions["tiddly"].db.dispose()


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", "one DeclarativeBase subclass"),
    ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    (MODELS.replace('TIDDLY_TABLES = ["authors", "audit"]', 'TIDDLY_TABLES = ["nope"]'), "nope"),
    (MODELS + "TIDDLY_TABLES = 'authors'\n", "must be a list"),
])
def test_bad_models_files_are_one_clear_sentence(tmp_path, text, message):
    path = tmp_path / "bad_models.py"
    path.write_text(text)
    with pytest.raises(schema.SchemaError, match=re.escape(message)):
        schema.from_models_file(path)


def test_serve_refuses_a_missing_models_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tiddly", "serve", "--models", str(tmp_path / "none.py"),
                             "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "no models file at" in result.stderr


SHELVES = '''
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

class Base(DeclarativeBase):
    pass

class Shelf(Base):
    __tablename__ = "shelves"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
    jars: Mapped[list["Jar"]] = relationship(back_populates="shelf")

class Jar(Base):
    __tablename__ = "jars"
    id: Mapped[int] = mapped_column(primary_key=True)
    content: Mapped[str] = mapped_column(String(50))
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id"))
    shelf: Mapped[Shelf] = relationship(back_populates="jars")
'''


def test_a_models_files_relationships_serve_include_and_nested_insert(tmp_path, sqlite_url):
    path = tmp_path / "shelf_models.py"
    path.write_text(SHELVES)
    loaded = schema.from_models_file(path)
    app = create_app(Config(database_url=sqlite_url), loaded.metadata, loaded.registry)
    client = app.test_client()
    try:
        created = ok(client.post("/shelves", json={"label": "top", "jars": [{"content": "jam"},
                                                                              {"content": "honey"}]}), 201)
        page = ok(client.open("/shelves", method="FETCH", json={"include": ["jars"]}))
        assert [j["content"] for j in page["data"][0]["jars"]] == ["jam", "honey"]
        jars = ok(client.open("/jars", method="FETCH", json={"include": ["shelf"], "limit": 1}))
        assert jars["data"][0]["shelf"]["id"] == created["id"]
    finally:
        app.extensions["tiddly"].db.dispose()
