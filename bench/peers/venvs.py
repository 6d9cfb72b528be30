"""The peers' virtual environments, built by the bench from pinned versions under bench/.cache/
(gitignored; the peers are never Tiddly's dependencies). A venv's directory is named by a hash of
its pins, so changing a pin builds a new one and an interrupted build is never reused.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache"

# Everything each peer imports, pinned. sandman2 1.2.3 (its last release) pins SQLAlchemy 1.3.3
# and Flask-SQLAlchemy 2.4.0 itself; the Flask it runs on must be older than Werkzeug 2.1, whose context
# stack lost the __ident_func__ Flask-SQLAlchemy 2.4 scopes its sessions by.
# SQLAlchemy 1.3 has no psycopg 3 dialect, so sandman2 reaches PostgreSQL through psycopg2.
PINS = {
    "sandman2": ["sandman2==1.2.3", "SQLAlchemy==1.3.3", "Flask-SQLAlchemy==2.4.0", "Flask==2.0.3",
                 "Werkzeug==2.0.3", "Flask-Admin==1.6.1", "WTForms==3.0.1", "Flask-HTTPAuth==4.8.0",
                 "Jinja2==3.0.3", "itsdangerous==2.0.1", "click==8.1.8", "MarkupSafe==2.1.5",
                 "psycopg2-binary==2.9.9", "PyMySQL==1.1.1"],
    "restless": ["Flask-Restless-NG==3.3.0", "Flask==3.0.3", "Werkzeug==3.0.6", "Flask-SQLAlchemy==3.1.1",
                 "SQLAlchemy==2.0.36", "python-dateutil==2.9.0.post0", "six==1.16.0", "blinker==1.9.0", "Jinja2==3.1.6",
                 "itsdangerous==2.2.0", "click==8.1.8", "MarkupSafe==3.0.2", "psycopg[binary]==3.2.3",
                 "typing_extensions==4.12.2", "greenlet==3.1.1", "PyMySQL==1.1.1"],
}
# The peer's URL for the bench's database: the driver its SQLAlchemy can use.
DRIVERS = {"sandman2": {"postgresql": "postgresql+psycopg2"}, "restless": {"postgresql": "postgresql+psycopg"}}


def http_pin(http: str) -> str:
    """The HTTP server at the very version Tiddly's environment has, so the runner is the same."""
    return f"{http}=={importlib.metadata.version(http)}"


def python(peer: str, http: str = "granian") -> Path:
    """The peer venv's interpreter, building the venv first if it is not there yet."""
    pinned = pins(peer, http)
    home = CACHE / f"{peer}-{hashlib.sha256(' '.join(pinned).encode()).hexdigest()[:10]}"
    exe = home / "bin" / "python"
    if (home / "ready").exists():
        return exe
    print(f"building {peer}'s virtual environment in {home} ...", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        subprocess.run([str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", *pinned],
                       check=True)
        subprocess.run([str(exe), "-m", "pip", "check"], check=True, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"could not build {peer}'s virtual environment ({' '.join(exc.cmd[1:4])} failed; pip's "
                 "output is above): PyPI must be reachable the first time a peer runs")
    (home / "ready").write_text("\n".join(pinned) + "\n")
    return exe


def pins(peer: str, http: str = "granian") -> list[str]:
    return sorted(PINS[peer] + [http_pin(http)])


def database_url(peer: str, url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{DRIVERS[peer].get(scheme.split('+')[0], scheme)}://{rest}"
