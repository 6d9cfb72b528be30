"""The hand-written reference (b): one Flask file, SQLAlchemy ORM models, one route per
operation, a session per request and ``to_dict()`` -- the way the Flask and SQLAlchemy
tutorials teach it. It returns the same JSON shapes as Tiddly so both do the same work.

    BENCH_DATABASE_URL=... gunicorn reference_app:app   (bench/run.py serves it via bench/serve.py)
"""
from __future__ import annotations

import datetime as dt
import os

from flask import Flask, abort, jsonify, request
from sqlalchemy import DateTime, Integer, String, create_engine, func, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    scoped_session,
    sessionmaker,
)

# A tutorial's connection settings: the engine as Flask's SQLAlchemy pattern makes it, SQLAlchemy's and the
# driver's defaults (on SQLite pysqlite's deferred transactions and 5 s busy timeout, the file's own journal mode).
engine = create_engine(os.environ["BENCH_DATABASE_URL"])
db_session = scoped_session(sessionmaker(autoflush=False, bind=engine))


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    age: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, server_default=func.now())

    def to_dict(self):
        return {c.name: getattr(self, c.name) for c in self.__table__.columns}


app = Flask(__name__)


@app.teardown_appcontext
def shutdown_session(exception=None):
    db_session.remove()


@app.get("/users/<int:user_id>")
def get_user(user_id):
    user = db_session.get(User, user_id)
    if user is None:
        abort(404)
    return jsonify({"status": "success", "data": user.to_dict()})


@app.get("/users/by-name/<name>")
def users_by_name(name):
    stmt = (select(User).filter_by(name=name).order_by(User.email.desc())
            .limit(request.args.get("limit", 20, type=int)).offset(request.args.get("offset", 0, type=int)))
    users = db_session.scalars(stmt).all()
    return jsonify({"status": "success", "data": [u.to_dict() for u in users]})


@app.get("/users/by-age")
def users_by_age():
    stmt = (select(User).where(User.age > request.args.get("gt", type=int), User.age < request.args.get("lt", type=int))
            .order_by(User.id).limit(request.args.get("limit", 50, type=int)))
    users = db_session.scalars(stmt).all()
    return jsonify({"status": "success", "data": [u.to_dict() for u in users]})


@app.post("/users")
def create_user():
    data = request.get_json()
    user = User(email=data["email"], name=data["name"], age=data["age"])
    db_session.add(user)
    db_session.commit()
    return jsonify({"status": "success", "id": user.id, "data": user.to_dict()}), 201


@app.post("/users/bulk")
def create_users():
    users = [User(email=d["email"], name=d["name"], age=d["age"]) for d in request.get_json()]
    db_session.add_all(users)
    db_session.flush()
    ids = [u.id for u in users]
    db_session.commit()
    return jsonify({"status": "success", "ids": ids, "count": len(ids)}), 201


@app.patch("/users/<int:user_id>")
def update_user(user_id):
    user = db_session.get(User, user_id)
    if user is None:
        abort(404)
    for key, value in request.get_json().items():
        setattr(user, key, value)
    db_session.commit()
    return jsonify({"status": "success", "id": user.id, "data": user.to_dict()})


@app.delete("/users/<int:user_id>")
def delete_user(user_id):
    user = db_session.get(User, user_id)
    if user is None:
        abort(404)
    db_session.delete(user)
    db_session.commit()
    return jsonify({"status": "success", "id": user_id})
