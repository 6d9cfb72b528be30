"""What reflection alone does not say about a database's relations, asked of its own catalog.

SQLAlchemy reflects a view's columns, but not whether the database lets the view be
written, nor which table column each of its columns shows; and on MariaDB a JSON column
reflects as LONGTEXT. PostgreSQL answers from pg_catalog, MariaDB from information_schema.
SQLite never writes a view (only its INSTEAD OF triggers do) and does not say where a view's
columns come from, so its views are read-only and show no table's keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection

WRITES = frozenset({"insert", "update", "delete"})


@dataclass(frozen=True)
class ViewFacts:
    """A view, as its database describes it.

    ``writes``: which of insert, update and delete the database accepts on it.
    ``origins``: each column that shows a table's column unchanged -> (table, column); through
    views on views down to the table. ``read_only_columns``: the columns of a writable view
    that the database will not write (an expression, a constant)."""
    name: str
    writes: frozenset[str] = frozenset()
    origins: dict[str, tuple[str, str]] = field(default_factory=dict)
    read_only_columns: frozenset[str] = frozenset()


def view_facts(conn: Connection, schema: str | None) -> dict[str, ViewFacts]:
    """The views of ``schema`` (the connection's default when None), by name."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _postgresql_views(conn, schema)
    if dialect in ("mysql", "mariadb"):
        return _mysql_views(conn, schema)
    return {}


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


# -- PostgreSQL ---------------------------------------------------------------------------------

_PG_VIEWS = text("""
    SELECT c.oid, c.relname, pg_relation_is_updatable(c.oid::regclass, true) AS events,
           r.ev_action::text AS definition
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
    WHERE n.nspname = COALESCE(:schema, current_schema()) AND c.relkind IN ('v', 'm')
""")
# Every column of the schema's relations, to name what a view's target list points at by number.
_PG_COLUMNS = text("""
    SELECT c.oid, c.relname, a.attnum, a.attname, pg_column_is_updatable(c.oid, a.attnum, true) AS updatable
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = COALESCE(:schema, current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
""")
# pg_relation_is_updatable's bits: 1 << CMD_UPDATE, CMD_INSERT, CMD_DELETE
_PG_EVENTS = {"update": 4, "insert": 8, "delete": 16}


def _postgresql_views(conn: Connection, schema: str | None) -> dict[str, ViewFacts]:
    views = conn.execute(_PG_VIEWS, {"schema": schema}).all()
    if not views:
        return {}
    columns, fixed = {}, {}
    for oid, relname, attnum, attname, updatable in conn.execute(_PG_COLUMNS, {"schema": schema}):
        columns[(oid, attnum)] = (relname, attname)
        fixed.setdefault(relname, set()).update(() if updatable else (attname,))
    # A view's target list: column name -> (relation oid, column number) it shows, per view oid.
    targets = {oid: _target_list(definition) for oid, _, _, definition in views}

    def origin(oid: int, column: str, seen: frozenset = frozenset()) -> tuple[str, str] | None:
        source = targets.get(oid, {}).get(column)
        if source is None or source not in columns or oid in seen:
            return None
        if source[0] in targets:  # a view on a view: follow it down to the table
            return origin(source[0], columns[source][1], seen | {oid})
        return columns[source]

    facts = {}
    for oid, name, events, _ in views:
        writes = frozenset(event for event, bit in _PG_EVENTS.items() if events & bit)
        origins = {column: found for column in targets[oid] if (found := origin(oid, column))}
        facts[name] = ViewFacts(name, writes, origins, frozenset(fixed.get(name, ())) if writes else frozenset())
    return facts


def _target_list(definition: str | None) -> dict[str, tuple[int, int]]:
    """From a view's stored query (pg_rewrite.ev_action, PostgreSQL's node tree text): each
    output column's name -> (resorigtbl, resorigcol), the table column it shows unchanged.
    Only the top query's target list counts; a definition that does not parse shows none."""
    try:
        tree = _parse_node(_node_tokens(definition or ""))
        query = tree[0] if isinstance(tree, list) else tree
        entries = query.get("targetList") or []
        found = {}
        for entry in entries:
            table, column = int(entry.get("resorigtbl") or 0), int(entry.get("resorigcol") or 0)
            if table and column and entry.get("resjunk") != "true":
                found.setdefault(entry["resname"], (table, column))
        return found
    except (ValueError, KeyError, IndexError, AttributeError, TypeError, StopIteration):
        return {}


def _node_tokens(source: str):
    """The tokens of PostgreSQL's node tree text (its read.c): ( ) { } alone, anything else up
    to a blank or one of those; a backslash takes the next character as it is."""
    index, size = 0, len(source)
    while index < size:
        char = source[index]
        if char in " \t\n":
            index += 1
        elif char in "(){}":
            yield char
            index += 1
        else:
            token = []
            while index < size and source[index] not in " \t\n(){}":
                if source[index] == "\\" and index + 1 < size:
                    index += 1
                token.append(source[index])
                index += 1
            yield "".join(token)


def _parse_node(tokens, first: str | None = None):
    """One value: {NODE :field value ...} as a dict, ( ... ) as a list, anything else as text."""
    token = first if first is not None else next(tokens)
    if token == "(":
        items = []
        for item in tokens:
            if item == ")":
                return items
            items.append(_parse_node(tokens, item))
        raise ValueError("unclosed list")
    if token != "{":
        return token
    node, key, values = {"": next(tokens)}, None, []
    for item in tokens:
        if item == "}" or item.startswith(":"):
            if key is not None:
                node[key] = values[0] if len(values) == 1 else values
            if item == "}":
                return node
            key, values = item[1:], []
        else:
            values.append(_parse_node(tokens, item))
    raise ValueError("unclosed node")


# -- MariaDB ------------------------------------------------------------------------------------

def _mysql_views(conn: Connection, schema: str | None) -> dict[str, ViewFacts]:
    database = schema or conn.execute(text("SELECT DATABASE()")).scalar()
    views = conn.execute(text(
        "SELECT TABLE_NAME, IS_UPDATABLE, VIEW_DEFINITION FROM information_schema.VIEWS "
        "WHERE TABLE_SCHEMA = :schema"), {"schema": database}).all()
    if not views:
        return {}
    selects = {name: _select_list(definition or "", database) for name, _, definition in views}
    view_columns = _mysql_columns(conn, database, [name for name, _, _ in views])

    def origin(view: str, column: str, seen: frozenset = frozenset()) -> tuple[str, str] | None:
        source = selects.get(view, {}).get(column)
        if source is None or view in seen:
            return None
        if source[0] in selects:
            return origin(source[0], source[1], seen | {view})
        return source

    facts = {}
    for name, updatable, _ in views:
        origins = {column: found for column in view_columns.get(name, ()) if (found := origin(name, column))}
        derived = frozenset(view_columns.get(name, ())) - set(origins)
        writes = frozenset()
        if updatable == "YES":
            # MariaDB says whether a view can be updated (and so deleted from); it inserts into
            # one whose every column is a table's and that leaves out no column the table needs.
            writes = frozenset({"update", "delete"})
            if not derived and _inserts_whole_rows(conn, database, origins):
                writes |= {"insert"}
        facts[name] = ViewFacts(name, writes, origins, derived if writes else frozenset())
    return facts


def _mysql_columns(conn: Connection, database: str, tables: list[str]) -> dict[str, list[str]]:
    rows = conn.execute(text(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :schema "
        "ORDER BY TABLE_NAME, ORDINAL_POSITION"), {"schema": database})
    found: dict[str, list[str]] = {}
    for table, column in rows:
        if table in tables:
            found.setdefault(table, []).append(column)
    return found


def _inserts_whole_rows(conn: Connection, database: str, origins: dict[str, tuple[str, str]]) -> bool:
    tables = {table for table, _ in origins.values()}
    if len(tables) != 1:
        return False
    (table,) = tables
    needed = conn.execute(text(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :schema "
        "AND TABLE_NAME = :table AND IS_NULLABLE = 'NO' AND COLUMN_DEFAULT IS NULL "
        "AND EXTRA NOT LIKE '%auto_increment%' AND GENERATION_EXPRESSION IS NULL"),
        {"schema": database, "table": table}).scalars()
    shown = {column for _, column in origins.values()}
    return set(needed) <= shown


_NAME = r"`((?:[^`]|``)+)`"
_PLAIN_ITEM = re.compile(rf"(?:{_NAME}\.)?{_NAME}\.{_NAME} AS {_NAME}")  # [`db`.]`table`.`column` AS `name`


def _select_list(definition: str, database: str) -> dict[str, tuple[str, str]]:
    """From a view's definition as MariaDB stores it (every name quoted and qualified:
    select `db`.`t`.`id` AS `id`,... from ..., a view's columns without the database): each
    output column that is a plain column of this database -> (table, column). A UNION shows
    no single origin: none."""
    if not definition.lower().startswith("select "):
        return {}
    items, start, depth, quote = [], len("select "), 0, None
    index = start
    while index < len(definition):
        char = definition[index]
        if quote:
            if char == quote:
                quote = None
        elif char in "`'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and char == ",":
            items.append(definition[start:index])
            start = index + 1
        elif depth == 0 and definition.startswith(" from ", index):
            break
        index += 1
    items.append(definition[start:index])
    if re.search(r"\sunion\s", definition[index:], re.IGNORECASE):
        return {}
    found = {}
    for item in items:
        match = _PLAIN_ITEM.fullmatch(item.strip())
        if match:
            db, table, column, alias = (part and part.replace("``", "`") for part in match.groups())
            if db in (None, database):
                found.setdefault(alias, (table, column))
    return found
