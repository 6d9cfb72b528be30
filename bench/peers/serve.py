"""Serve a peer (sandman2 or Flask-Restless-NG) under the bench's HTTP server, from the peer's own
virtual environment (bench/peers/venvs.py builds it; the peers pin their own Flask and SQLAlchemy,
so Tiddly's package cannot be imported here). The runner is Tiddly's own file, loaded by path, so
every server in the bench gets the same server code, worker class, workers and threads.

    PEER_PYTHON bench/peers/serve.py sandman2|restless DATABASE_URL PORT WORKERS THREADS [HTTP]
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RUNNER_FILES = {"gunicorn": HERE.parent.parent / "tiddly" / "cli" / "server.py"}  # http kind -> runner


def runner(http: str):
    spec = importlib.util.spec_from_file_location("bench_http_runner", RUNNER_FILES[http])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


def factory(peer: str, url: str):
    if peer == "sandman2":
        from sandman2_app import create_app
    else:
        from restless_app import create_app
    return create_app(url)


def main() -> None:
    peer, url, port, workers, threads = sys.argv[1:6]
    http = sys.argv[6] if len(sys.argv) > 6 else "gunicorn"
    runner(http)(lambda: factory(peer, url), "127.0.0.1", int(port), int(workers), int(threads))


if __name__ == "__main__":
    main()
