"""Alembic migrations of the shipped models: `tiddly db ...`, and what `tiddly serve` does with them."""
from __future__ import annotations

import datetime as dt
import shlex
import shutil

import pytest
import requests
from click.testing import CliRunner
from conftest import DATABASES, _prepare_server, server_url
from serving import LiveServer, free_port
from sqlalchemy import (
    MetaData,
    Table,
    create_engine,
    delete,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tiddly import migrate
from tiddly.cli import main


def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    engine.dispose()
    return names


def _wipe(url: str) -> None:
    engine = create_engine(url)
    existing = MetaData()
    existing.reflect(engine)
    existing.drop_all(engine)
    engine.dispose()


@pytest.fixture
def server_schema_wiped(prepared_servers):
    """Wipes a server database by name; it gets the suite's usual tables back afterwards."""
    wiped = []

    def wipe(name: str) -> str:
        url = server_url(name)
        _wipe(url)
        wiped.append(url)
        return url

    yield wipe
    for url in wiped:
        _prepare_server(url)
        prepared_servers[url] = True


@pytest.fixture(params=DATABASES)
def empty_url(request, tmp_path, prepared_servers):
    """An empty database; a server one gets the suite's usual tables back afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = server_url(request.param)
    _wipe(url)
    yield url
    _prepare_server(url)
    prepared_servers[url] = True


def _tiddly(*args: str, check: bool = True):
    """Run the `tiddly` command line in-process (click's runner); output is stdout and stderr."""
    result = CliRunner().invoke(main, list(args))
    if check:
        assert result.exit_code == 0, result.output
    return result


def test_upgrade_to_head_matches_the_models_then_downgrade_to_base(empty_url):
    migrate.upgrade(empty_url)
    assert migrate.current(empty_url) == migrate.head()
    assert {"user", "dual", "books", "stores", "items"} <= _table_names(empty_url)
    assert migrate.differences(empty_url) == []
    migrate.downgrade(empty_url, "base")
    assert migrate.current(empty_url) is None
    assert _table_names(empty_url) <= {"alembic_version"}


def test_db_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    head = migrate.head()
    assert head in _tiddly("db", "history").output
    assert _tiddly("db", "current", "--database-url", url).output.strip() == f"base (head is {head})"
    _tiddly("db", "upgrade", "--database-url", url)
    assert _tiddly("db", "current", "--database-url", url).output.strip() == f"{head} (head)"
    _tiddly("db", "downgrade", "base", "--database-url", url)
    assert _table_names(url) <= {"alembic_version"}
    _tiddly("db", "stamp", "head", "--database-url", url)
    assert migrate.current(url) == head


def test_revision_autogenerate_writes_nothing_to_do_at_head(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'rev.db'}"
    migrate.upgrade(url)
    # A scratch copy of the history, so the test never adds a file to the project.
    shutil.copytree(migrate.MIGRATIONS, tmp_path / "migrations")
    monkeypatch.setattr(migrate, "MIGRATIONS", tmp_path / "migrations")
    path = migrate.revision(url, "nothing changed", autogenerate=True)
    text = open(path).read()
    assert "def upgrade() -> None:" in text and "op.create_table" not in text and "op.add_column" not in text


def test_serve_upgrades_a_new_sqlite_file(tmp_path, live_server_factory):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    server = live_server_factory(url)
    assert requests.post(server.url + "/books", json={"title": "Dune", "author": "Herbert"}).status_code == 201
    assert migrate.current(url) == migrate.head()
    assert f"created the schema at revision {migrate.head()}" in server.stop()


@pytest.mark.parametrize("name", ["postgresql", "mysql"])
def test_two_serves_on_one_empty_server_database_both_come_up(name, server_schema_wiped):
    url = server_schema_wiped(name)
    servers = [LiveServer(url, workers=1, threads=2, wait=False) for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready(timeout=90)
        for n, server in enumerate(servers):
            created = requests.post(server.url + "/books", json={"title": f"T{n}", "author": "A"})
            assert created.status_code == 201, created.text
    finally:
        logs = [server.stop() for server in servers]
    assert migrate.current(url) == migrate.head()
    assert sum("created the schema at revision" in log for log in logs) == 1, logs


@pytest.mark.parametrize("name", ["postgresql", "mysql"])
def test_serve_refuses_a_server_database_behind_the_models_naming_the_command(name, server_schema_wiped):
    url = server_schema_wiped(name)
    migrate.upgrade(url, "0001")
    before = _table_names(url)
    with_password = make_url(url).set(password="secret") if name == "postgresql" else make_url(url)  # trust auth
    result = _tiddly("serve", "--database-url", with_password.render_as_string(hide_password=False),
                     "--port", str(free_port()), check=False)
    command = f"tiddly db upgrade --database-url {with_password.render_as_string(hide_password=True)}"
    assert result.exit_code != 0
    assert f"at revision 0001 but the models need {migrate.head()}; run `{command}` first" in result.output
    assert "secret" not in result.output
    assert _table_names(url) == before and migrate.current(url) == "0001"  # nothing was changed
    _tiddly(*shlex.split(command)[1:])  # the command, as named, does it
    assert migrate.current(url) == migrate.head()


@pytest.mark.parametrize("name", DATABASES)
def test_serve_leaves_a_database_of_someone_elses_tables_alone(name, server_schema_wiped, tmp_path):
    url = f"sqlite:///{tmp_path / 'theirs.db'}" if name == "sqlite" else server_schema_wiped(name)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE theirs (id INTEGER PRIMARY KEY, note VARCHAR(20))"))
    engine.dispose()
    result = _tiddly("serve", "--database-url", url, "--port", str(free_port()), check=False)
    assert result.exit_code != 0
    assert "the database has 1 table of its own and none of Tiddly's: serve those with `tiddly serve --reflect`" \
        in result.output
    assert _table_names(url) == {"theirs"}


def test_0003_lets_a_reading_lack_its_pressure_and_loses_nothing_either_way(empty_url):
    """Readings stored before the upgrade stay; the CHECK on the pressure stays; a downgrade
    that would have to drop a reading without a pressure refuses."""
    migrate.upgrade(empty_url, "0002")
    engine = create_engine(empty_url)
    readings = Table("patient_readings", MetaData(), autoload_with=engine)
    row = {"room_number": 101, "patient_mrn": 5, "timestamp": dt.datetime(2025, 1, 1), "breath_rate": 14.0}
    try:
        with engine.begin() as conn:
            conn.execute(insert(readings).values({**row, "CPAP_pressure": 12, "apnea_count": 1}))
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(insert(readings).values({**row, "CPAP_pressure": None}))
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(insert(readings).values({**row, "CPAP_pressure": -1}))
        assert migrate.differences(engine) == []

        with pytest.raises(RuntimeError, match="1 readings in patient_readings have no CPAP_pressure"):
            migrate.downgrade(engine, "0002")
        assert migrate.current(engine) == migrate.head()
        with engine.connect() as conn:
            assert conn.execute(select(readings.c.CPAP_pressure).order_by(readings.c.id)).scalars().all() == [12, None]

        with engine.begin() as conn:
            conn.execute(delete(readings).where(readings.c.CPAP_pressure.is_(None)))
        migrate.downgrade(engine, "0002")
        with engine.connect() as conn:
            assert conn.execute(select(readings.c.CPAP_pressure)).scalars().all() == [12]
    finally:
        engine.dispose()
