"""Serve a peer (sandman2 or Flask-Restless-NG) under the bench's HTTP server, from the peer's own
virtual environment (bench/peers/venvs.py builds it; the peers pin their own Flask and SQLAlchemy,
so Tiddly's package cannot be imported here). The runner is Tiddly's own file, loaded by path, so
every server in the bench gets the same server code, worker class, workers and threads.

    PEER_PYTHON bench/peers/serve.py sandman2|restless DATABASE_URL PORT WORKERS THREADS [HTTP]
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PACKAGE = HERE.parent.parent / "tiddly"
CLI = PACKAGE / "cli"  # server.py runs either server; granian's path needs admission.py (and what it imports)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def runner():
    """server.run, with tiddly.cli.admission and the two standalone modules it imports loaded by
    path under their own names (the package's __init__ would import Tiddly's app, which needs a
    newer Flask than the peers run on)."""
    for name in ("tiddly", "tiddly.cli", "tiddly.web"):
        package = types.ModuleType(name)
        package.__path__ = []
        sys.modules.setdefault(name, package)
    _load("tiddly.errors", PACKAGE / "errors.py")
    _load("tiddly.web.native", PACKAGE / "web" / "native.py")
    _load("tiddly.cli.admission", CLI / "admission.py")
    return _load("bench_http_runner", CLI / "server.py").run


def factory(peer: str, url: str):
    if peer == "sandman2":
        from sandman2_app import create_app
    else:
        from restless_app import create_app
    return create_app(url)


def main() -> None:
    peer, url, port, workers, threads = sys.argv[1:6]
    http = sys.argv[6] if len(sys.argv) > 6 else "granian"
    runner()(lambda: factory(peer, url), "127.0.0.1", int(port), int(workers), int(threads), server=http)


if __name__ == "__main__":
    main()
