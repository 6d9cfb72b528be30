"""Starting Tiddly from the command line: what a new user sees when something is wrong, and when not."""
from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from importlib import metadata

import pytest
import requests
from conftest import ready_server, server_url
from serving import ROOT, free_port, wait_healthy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tiddly.storage import SHIPPED_DRIVERS


def tiddly(*args: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    """The `tiddly` command in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tiddly", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_short_failure(result: subprocess.CompletedProcess, *phrases: str) -> None:
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0, lines
    assert "Traceback" not in result.stderr and 1 <= len(lines) <= 2, lines
    for phrase in phrases:
        assert phrase in "\n".join(lines), lines


def _absent_database(name: str) -> str:
    url = make_url(server_url(name))
    return url.set(database=f"{url.database}_absent").render_as_string(hide_password=False)


# -- a database that cannot be opened: one or two lines, a non-zero exit -----------

@pytest.mark.parametrize("url, phrases", [
    ("nonsense", ["'nonsense' is not a database URL"]),
    ("oracle2://scott@host/db", ["unknown kind of database 'oracle2'"]),
    ("postgresql+psycopg2://u@localhost/db", ["'psycopg2' is not installed"]),
    ("sqlite:////nonexistent/dir/x.db", ["the directory /nonexistent/dir does not exist"]),
    ("postgres://tiddly@127.0.0.1:{port}/db", ["nothing is listening at 127.0.0.1:"]),
    ("mysql://tiddly@127.0.0.1:{port}/db", ["nothing is listening at 127.0.0.1:"]),
])
def test_serve_names_what_is_wrong_with_the_database_url(url, phrases, tmp_path):
    url = url.replace("{port}", str(free_port()))  # at run time: every xdist worker collects the same ids
    result = tiddly("serve", "--port", str(free_port()), "--database-url", url, cwd=tmp_path)
    assert_short_failure(result, *phrases)
    assert list(tmp_path.iterdir()) == []  # no tiddly.db made on the way


@pytest.mark.parametrize("name, create", [("postgresql", "createdb "), ("mysql", "CREATE DATABASE ")])
def test_serve_names_a_server_database_that_does_not_exist(name, create):
    url = _absent_database(name)
    result = tiddly("serve", "--port", str(free_port()), "--database-url", url)
    assert_short_failure(result, f"the database '{make_url(url).database}' does not exist", create)


@pytest.mark.parametrize("command", [
    ["keys", "list"], ["keys", "create", "--name", "k", "--scope", "read"], ["db", "current"],
    ["db", "upgrade"], ["export", "books"], ["import", "books", "README.md", "--format", "csv"], ["openapi"],
])
def test_every_command_that_opens_the_database_says_why_it_cannot(command):
    result = tiddly(*command, "--database-url", f"postgres://tiddly@127.0.0.1:{free_port()}/db")
    assert_short_failure(result, "cannot open the database postgresql+psycopg://", "nothing is listening")


# -- the driverless URLs hosting services set --------------------------------------

@pytest.mark.parametrize("scheme, name", [("postgres", "postgresql"), ("postgresql", "postgresql"),
                                          ("mysql", "mysql"), ("mariadb", "mysql")])
def test_driverless_database_urls_use_the_shipped_drivers(scheme, name, prepared_servers, live_server_factory):
    url = make_url(ready_server(name, prepared_servers)).set(drivername=scheme)
    server = live_server_factory(None, env={"TIDDLY_DATABASE_URL": "",
                                            "DATABASE_URL": url.render_as_string(hide_password=False)})
    created = requests.post(server.url + "/books", json={"title": "Dune", "author": "Herbert"})
    assert created.status_code == 201, created.text
    assert f" from {SHIPPED_DRIVERS[scheme]}://" in server.stop()


# -- the address, and the access log -------------------------------------------------

def test_a_port_in_use_is_one_line_and_creates_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tiddly("serve", "--port", str(port), cwd=tmp_path)
    assert_short_failure(result, f"port {port} on 127.0.0.1 is in use")
    assert result.returncode == 1
    assert list(tmp_path.iterdir()) == []  # no tiddly.db


def test_access_log_to_a_file(tmp_path, live_server_factory):
    log = tmp_path / "access.log"
    server = live_server_factory(f"sqlite:///{tmp_path / 'x.db'}", workers=1, extra_args=("--access-log", str(log)))
    assert requests.get(server.url + "/books?limit=1").status_code == 200
    requests.get(server.url + "/-/changes?tables=books&access_token=tdk_secret&x=1", timeout=5)
    requests.get(server.url + "/realtime/v1/websocket?apikey=tdk_other&vsn=1.0.0", timeout=5)
    server.stop()
    written = log.read_text()
    assert '"GET /books?limit=1 HTTP/1.1" 200' in written
    assert "tdk_secret" not in written and "tdk_other" not in written  # a key in a URL stays out of the log
    assert "/-/changes?tables=books&access_token=[hidden]&x=1" in written


def test_access_log_dash_is_stderr_beside_the_server_lines(tmp_path):
    port = free_port()
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:  # as a shell redirects
        process = subprocess.Popen([sys.executable, "-m", "tiddly", "serve", "--port", str(port), "--workers", "1",
                                    "--access-log", "-"], cwd=tmp_path, stdout=out, stderr=err)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process)
            assert requests.get(f"http://127.0.0.1:{port}/books?limit=1").status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert (tmp_path / "out").read_text() == ""
    err_lines = (tmp_path / "err").read_text().splitlines()
    assert any('"GET /books?limit=1 HTTP/1.1" 200' in line for line in err_lines)
    assert any("Stopped worker-1" in line for line in err_lines)  # nothing written over


def test_no_access_log_by_default(tmp_path, live_server_factory):
    server = live_server_factory(f"sqlite:///{tmp_path / 'x.db'}", workers=1)
    assert requests.get(server.url + "/books?limit=1").status_code == 200
    assert "GET /books" not in server.stop()


# -- small things a first look notices -------------------------------------------------

def test_version():
    result = tiddly("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"tiddly, version {metadata.version('tiddly')}"


def test_the_banner_counts_tables_in_english(tmp_path, live_server_factory):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    engine.dispose()
    banner = live_server_factory(url, workers=1, extra_args=("--reflect",)).stop()
    assert "Tiddly: 1 table (reflected)" in banner
    assert "Tiddly: 7 tables (shipped)" in live_server_factory(f"sqlite:///{tmp_path / 'x.db'}", workers=1).stop()


# -- the docs, as a new user follows them -------------------------------------------------

API_DOC = (ROOT / "docs" / "API.md").read_text()


def test_api_doc_calls_nothing_that_is_built_planned():
    assert "not built yet" not in API_DOC and "Planned" not in API_DOC


def test_after_the_readme_the_api_doc_says_how_to_start_fresh(tmp_path, live_server_factory):
    """README's quick start adds a book; API.md's examples expect id 1: its own advice gets there."""
    readme = live_server_factory(None, workers=1, cwd=tmp_path, env={"TIDDLY_DATABASE_URL": "", "DATABASE_URL": ""})
    assert requests.post(readme.url + "/books", json={"title": "Dune", "author": "Frank Herbert"}).json()["id"] == 1
    readme.stop()
    (command,) = re.findall(r"`(tiddly serve --database-url \S+)`", API_DOC)
    fresh = live_server_factory(shlex.split(command)[-1], workers=1, cwd=tmp_path)
    created = requests.post(fresh.url + "/books", json={"title": "Dune", "author": "Frank Herbert", "year": 1965})
    assert created.json()["id"] == 1
