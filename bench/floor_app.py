"""The floor (c): a bare WSGI callable, the database driver used directly with
hand-written SQL, orjson for the responses, no framework and no error envelope.
One connection per server thread, in autocommit (every operation is one statement,
so each is its own transaction). Same URLs as the reference app, same JSON shapes as Tiddly.
"""
from __future__ import annotations

import os
import threading
from urllib.parse import parse_qs, unquote

import orjson
from sqlalchemy.engine import make_url

URL = make_url(os.environ["BENCH_DATABASE_URL"])
BACKEND = URL.get_backend_name()
COLUMNS = "id, email, name, age, created_at"
KEYS = ("id", "email", "name", "age", "created_at")
RETURNING = BACKEND != "mysql"  # MariaDB has no UPDATE ... RETURNING: select the row instead
_local = threading.local()


def _connect():
    if BACKEND == "sqlite":
        import sqlite3
        conn = sqlite3.connect(URL.database, timeout=30, isolation_level=None, check_same_thread=False)
        return conn, "?"
    if BACKEND == "postgresql":
        import psycopg
        conn = psycopg.connect(host=URL.host, port=URL.port, user=URL.username, password=URL.password,
                               dbname=URL.database, autocommit=True)
        return conn, "%s"
    import pymysql
    conn = pymysql.connect(host=URL.host, port=URL.port or 3306, user=URL.username, password=URL.password or "",
                           database=URL.database, autocommit=True)
    return conn, "%s"


def _conn():
    if not hasattr(_local, "conn"):
        _local.conn, _local.mark = _connect()
    return _local.conn


def _sql(text: str) -> str:
    _conn()
    return text.replace("?", _local.mark)


def _query(sql: str, params=()) -> list[tuple]:
    cur = _conn().cursor()
    cur.execute(_sql(sql), params)
    rows = cur.fetchall()
    cur.close()
    return rows


def _execute(sql: str, params=()):
    cur = _conn().cursor()
    cur.execute(_sql(sql), params)
    return cur


def _rows(rows):
    return [dict(zip(KEYS, r)) for r in rows]


def get_user(uid, _qs, _body):
    rows = _query(f"SELECT {COLUMNS} FROM users WHERE id = ?", (uid,))
    return (200, {"status": "success", "data": _rows(rows)[0]}) if rows else (404, {"status": "error"})


def by_name(name, qs, _body):
    rows = _query(f"SELECT {COLUMNS} FROM users WHERE name = ? ORDER BY email DESC LIMIT ? OFFSET ?",
                  (name, int(qs.get("limit", ["20"])[0]), int(qs.get("offset", ["0"])[0])))
    return 200, {"status": "success", "data": _rows(rows)}


def by_age(_arg, qs, _body):
    rows = _query(f"SELECT {COLUMNS} FROM users WHERE age > ? AND age < ? ORDER BY id LIMIT ?",
                  (int(qs["gt"][0]), int(qs["lt"][0]), int(qs.get("limit", ["50"])[0])))
    return 200, {"status": "success", "data": _rows(rows)}


def create_user(_arg, _qs, body):
    d = orjson.loads(body)
    params = (d["email"], d["name"], d["age"])
    if RETURNING:
        rows = _query(f"INSERT INTO users (email, name, age) VALUES (?, ?, ?) RETURNING {COLUMNS}", params)
    else:
        uid = _execute("INSERT INTO users (email, name, age) VALUES (?, ?, ?)", params).lastrowid
        rows = _query(f"SELECT {COLUMNS} FROM users WHERE id = ?", (uid,))
    row = _rows(rows)[0]
    return 201, {"status": "success", "id": row["id"], "data": row}


def create_users(_arg, _qs, body):
    items = orjson.loads(body)
    values = ", ".join(["(?, ?, ?)"] * len(items))
    params = [v for d in items for v in (d["email"], d["name"], d["age"])]
    sql = f"INSERT INTO users (email, name, age) VALUES {values}"
    if RETURNING:
        ids = [r[0] for r in _query(sql + " RETURNING id", params)]
    else:
        first = _execute(sql, params).lastrowid  # consecutive ids for one multi-row insert
        ids = list(range(first, first + len(items)))
    return 201, {"status": "success", "ids": ids, "count": len(ids)}


def update_user(uid, _qs, body):
    d = orjson.loads(body)
    if RETURNING:
        rows = _query(f"UPDATE users SET age = ? WHERE id = ? RETURNING {COLUMNS}", (d["age"], uid))
    else:
        _execute("UPDATE users SET age = ? WHERE id = ?", (d["age"], uid))
        rows = _query(f"SELECT {COLUMNS} FROM users WHERE id = ?", (uid,))
    return (200, {"status": "success", "id": uid, "data": _rows(rows)[0]}) if rows else (404, {"status": "error"})


def delete_user(uid, _qs, _body):
    count = _execute("DELETE FROM users WHERE id = ?", (uid,)).rowcount
    return (200, {"status": "success", "id": uid}) if count else (404, {"status": "error"})


def _route(method: str, path: str):
    parts = path.strip("/").split("/")
    if parts[0] != "users":
        return None, None
    if len(parts) == 1:
        return {"POST": create_user}.get(method), None
    if len(parts) == 2 and parts[1] == "by-age" and method == "GET":
        return by_age, None
    if len(parts) == 2 and parts[1] == "bulk" and method == "POST":
        return create_users, None
    if len(parts) == 3 and parts[1] == "by-name" and method == "GET":
        return by_name, unquote(parts[2])
    if len(parts) == 2 and parts[1].isdigit():
        return {"GET": get_user, "PATCH": update_user, "DELETE": delete_user}.get(method), int(parts[1])
    return None, None


def app(environ, start_response):
    handler, arg = _route(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
    if handler is None:
        status, payload = 404, {"status": "error"}
    else:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, payload = handler(arg, parse_qs(environ.get("QUERY_STRING", "")), body)
    data = orjson.dumps(payload)
    start_response(f"{status} {'OK' if status < 300 else 'Error'}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
