"""Make the bench's SQLite file the way another program would: Python's sqlite3 module and SQL
written by hand, no SQLAlchemy and nothing of Tiddly's. The file is in WAL mode, as a program that
lets readers and a writer work at once sets it (the mode is stored in the file, so every server
that opens it later runs in WAL); the table has the columns, constraints and indexes of
bench_models.py, its 100,000 rows and ANALYZE's statistics.

    python bench/make_sqlite_users.py PATH [ROWS]
"""
from __future__ import annotations

import datetime as dt
import os
import sqlite3
import sys

NAMES = 500
SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(100) NOT NULL,
    age INTEGER NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX ix_users_name ON users (name);
CREATE INDEX ix_users_age ON users (age);
"""


def row(i: int) -> tuple:
    created = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i)
    return i, f"u{i:06d}@bench.test", f"name{i % NAMES}", 18 + (i * 7) % 63, created.strftime("%Y-%m-%d %H:%M:%S")


def make(path: str, rows: int) -> None:
    for leftover in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(SCHEMA)
    with connection:
        connection.executemany("INSERT INTO users (id, email, name, age, created_at) VALUES (?, ?, ?, ?, ?)",
                               (row(i) for i in range(1, rows + 1)))
    connection.execute("ANALYZE")
    connection.close()


if __name__ == "__main__":
    make(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
