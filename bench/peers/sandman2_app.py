"""sandman2 serving the bench's users table through its documented "Using your own database models"
path: a model declared as its docs' example declares one (``class User(db.Model, Model)`` with
``db.Column``s) and ``get_app(URI, user_models=[User])``, served at /user/ (sandman2 names the URL
after the class). Not the reflecting quickstart (``sandman2ctl URI``): sandman2 demands in every
POST each NOT NULL column, server default or not, and its SQLAlchemy 1.3 takes no JSON string for
a DateTime on SQLite, so a reflected users table cannot be inserted into on SQLite at all.
bench/peers/serve.py runs it in sandman2's own virtual environment under the bench's HTTP server.
"""
from __future__ import annotations

from sandman2 import get_app
from sandman2.model import Model, db


class User(db.Model, Model):
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(255), unique=True)
    name = db.Column(db.String(100), index=True)
    age = db.Column(db.Integer, index=True)
    created_at = db.Column(db.DateTime, server_default=db.func.now())


def create_app(database_url: str):
    app = get_app(database_url, user_models=[User])
    app.config["SECRET_KEY"] = "bench"  # sandman2ctl sets one for its admin pages
    return app
