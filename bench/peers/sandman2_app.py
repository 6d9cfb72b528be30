"""sandman2 serving the bench's tables the way its README's quickstart does (``sandman2ctl URI``
is ``get_app(URI)`` plus Flask's development server): every table reflected, no code of ours.
bench/peers/serve.py runs it in sandman2's own virtual environment under the bench's HTTP server.
"""
from __future__ import annotations

from sandman2 import get_app


def create_app(database_url: str):
    app = get_app(database_url)
    app.config["SECRET_KEY"] = "bench"  # sandman2ctl sets one for its admin pages
    return app
