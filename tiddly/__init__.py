"""Tiddly: a table-driven REST gateway for SQL databases (Flask + SQLAlchemy).

The public surface: ``from tiddly import create_app`` (a WSGI app factory, e.g.
``gunicorn 'tiddly:create_app()'``), the ``tiddly`` command and ``python -m tiddly``.
"""
from tiddly.tiddly import create_app

__all__ = ["create_app"]
