"""Installing Tiddly adds one import name, `tiddly`, and a user's own modules never collide with it.

The wheel is built from a copy of the source tree and installed (not editable) into a
folder of its own; every command then runs from a directory holding the user's own
`config.py`, `errors.py`, `models.py`, `database.py` and `migrations/env.py`, with that
folder first on the path, as after a normal `pip install`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import requests
from serving import ROOT, free_port, wait_healthy

# Every top-level module and package Tiddly installed before it became one package.
OLD_NAMES = ("config errors database models registry query crud cursor pages include aggregate nested upsert "
             "export export_cli jsonio passwords server auth guard idempotency schema commands openapi migrate "
             "patients cpap migrations").split()
BIN = Path(sys.executable).parent
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "dist", "*.egg-info", "__pycache__",
                                     "node_modules", ".pytest_cache", ".hypothesis", "*.db", "*.db-*")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source") / "tiddly"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("tiddly-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a folder of its own (dependencies come from this environment)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A project of the user's own, with the module names a tutorial has them write."""
    files = {
        "config.py": "NOTE_LEN = 500\n",
        "errors.py": "class NoteError(Exception):\n    pass\n",
        "database.py": "URL = 'sqlite:///notes.db'\n",
        "models.py": "RAISE = 'the user models module, never Tiddly'\nraise ImportError(RAISE)\n",
        "migrations/env.py": "raise ImportError('the user alembic env, never Tiddly')\n",
        "my_models.py": textwrap.dedent("""\
            import config
            from sqlalchemy import String
            from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

            class Base(DeclarativeBase):
                pass

            class Note(Base):
                __tablename__ = "notes"
                id: Mapped[int] = mapped_column(primary_key=True)
                body: Mapped[str] = mapped_column(String(config.NOTE_LEN))
            """),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _env(site: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(site), "TIDDLY_DATABASE_URL": "sqlite:///tiddly.db"}


def _run(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(site), capture_output=True, text=True, timeout=120)


def test_the_wheel_installs_one_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"tiddly"}
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["tiddly"]
    # The Alembic scripts and their template ship inside the package.
    assert "tiddly/migrations/env.py" in names and "tiddly/migrations/script.py.mako" in names
    assert any(n.startswith("tiddly/migrations/versions/0001_") for n in names)
    # The web page's template and files ship too: the page needs nothing from elsewhere.
    ui = ROOT / "tiddly" / "web" / "ui"
    shipped = [p.relative_to(ROOT).as_posix() for p in [*ui.glob("templates/*"), *ui.glob("static/*")]]
    assert len(shipped) >= 8 and set(shipped) <= set(names)


def test_none_of_the_old_module_names_import(installed, tmp_path):
    found = _run([sys.executable, "-c", textwrap.dedent(f"""\
        import importlib.util, tiddly
        print(tiddly.__file__)
        for name in {OLD_NAMES!r}:
            spec = importlib.util.find_spec(name)
            if spec is not None:
                print("IMPORTS", name, spec.origin)
        """)], tmp_path, installed)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].startswith(str(installed))
    assert "IMPORTS" not in found.stdout


def test_create_app_beside_the_users_own_modules(installed, user_dir):
    result = _run([sys.executable, "-c", "from tiddly import create_app; app = create_app(); c = app.test_client(); "
                   "print(*(c.get(p).status_code for p in ('/-/health', '/-/ui/', '/-/ui/static/app.js')))"],
                  user_dir, installed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200 200 200"  # the web page, from the installed wheel


def test_python_m_tiddly_beside_the_users_own_modules(installed, user_dir):
    result = _run([sys.executable, "-m", "tiddly", "--help"], user_dir, installed)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "keys" in result.stdout


def _serve_until_healthy(args: list[str], cwd: Path, site: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(args, cwd=cwd, env=_env(site), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    wait_healthy(f"http://127.0.0.1:{port}", process)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_gunicorn_serves_the_factory_beside_the_users_own_modules(installed, user_dir):
    port = free_port()
    process = _serve_until_healthy([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "tiddly:create_app()"],
                                   user_dir, installed, port)
    try:
        created = requests.post(f"http://127.0.0.1:{port}/books", json={"title": "Dune", "author": "Herbert"})
        assert created.status_code == 201, created.text
    finally:
        _stop(process)


def test_serve_a_models_file_that_imports_its_own_config(installed, user_dir):
    port = free_port()
    process = _serve_until_healthy([str(BIN / "tiddly"), "serve", "--port", str(port), "--workers", "1",
                                    "--models", "my_models.py", "--database-url", "sqlite:///notes.db"],
                                   user_dir, installed, port)
    try:
        too_long = requests.post(f"http://127.0.0.1:{port}/notes", json={"body": "x" * 501})
        assert too_long.status_code == 400 and "at most 500" in too_long.json()["error"]
        created = requests.post(f"http://127.0.0.1:{port}/notes", json={"body": "hello"})
        assert created.status_code == 201, created.text
    finally:
        _stop(process)
