"""Flask-Restless-NG serving the bench's users table the way its README's example does: a
Flask-SQLAlchemy model, ``APIManager(app, session=db.session)`` and ``create_api`` with the
verbs (JSON:API under /api/users). bench/peers/serve.py runs it in its own virtual environment.
"""
from __future__ import annotations

import flask
import flask_restless
import flask_sqlalchemy


def create_app(database_url: str):
    app = flask.Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db = flask_sqlalchemy.SQLAlchemy(app)

    class User(db.Model):
        __tablename__ = "users"
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(255), unique=True, nullable=False)
        name = db.Column(db.String(100), index=True, nullable=False)
        age = db.Column(db.Integer, index=True, nullable=False)
        created_at = db.Column(db.DateTime, server_default=db.func.now(), nullable=False)

    with app.app_context():  # Flask-SQLAlchemy 3's session needs one to set up the API
        manager = flask_restless.APIManager(app, session=db.session)
        manager.create_api(User, methods=["GET", "POST", "PATCH", "DELETE"])
    return app
