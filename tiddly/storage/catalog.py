"""What reflection alone does not say about a database's columns, asked of its own catalog.

On MariaDB a JSON column reflects as LONGTEXT: its CHECK constraint says it holds JSON.
"""
from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection


def json_columns(conn: Connection, schema: str | None) -> set[tuple[str, str]]:
    """(table, column) of every column that holds JSON but reflects as text: MariaDB's JSON
    is LONGTEXT with a CHECK (json_valid(column)), and any text column so checked holds JSON."""
    if conn.dialect.name not in ("mysql", "mariadb") or not getattr(conn.dialect, "is_mariadb", False):
        return set()
    rows = conn.execute(text(
        "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE()) AND CHECK_CLAUSE LIKE 'json_valid(%'"),
        {"schema": schema})
    found = set()
    for table, clause in rows:
        match = re.fullmatch(r"json_valid\(`((?:[^`]|``)+)`\)", clause.strip())
        if match:
            found.add((table, match.group(1).replace("``", "`")))
    return found
