"""Serve the reference, the floor or the Flask floor app under Tiddly's runner (server.run), the one
`tiddly serve` uses, so all get the same HTTP server (granian or gunicorn), workers and threads.

    python bench/serve.py reference|floor|flask_floor DATABASE_URL PORT WORKERS THREADS [granian|gunicorn]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from tiddly.cli.server import run  # noqa: E402


def factory(kind: str, url: str):
    os.environ["BENCH_DATABASE_URL"] = url
    if kind == "reference":
        from reference_app import app
        return app
    if kind == "flask_floor":
        from flask_floor_app import app
        return app
    from floor_app import app
    return app


def main() -> None:
    kind, url, port, workers, threads = sys.argv[1:6]
    server = sys.argv[6] if len(sys.argv) > 6 else "granian"
    run(lambda: factory(kind, url), "127.0.0.1", int(port), int(workers), int(threads), server=server)


if __name__ == "__main__":
    main()
