"""SQL expressions each database writes its own way: containment of JSON values, arrays and
ranges, regular expressions, full-text search, and the order of JSON values.

Each is a SQLAlchemy construct compiled per dialect (``@compiles``), so the query compiler
(``services/query.py``) builds one expression and each database gets its own SQL. Every value
in them is a bound parameter; the SQL around it is fixed here. What a database cannot do is a
typed error raised while the statement compiles, before any SQL is sent.

- PostgreSQL has the operators themselves: ``@>``, ``<@``, ``&&`` on arrays, ranges and jsonb,
  ``<<``, ``>>``, ``&<``, ``&>``, ``-|-`` on ranges, ``~`` and ``~*``, ``@@`` with
  ``to_tsquery`` and its kin.
- MariaDB has ``JSON_CONTAINS`` and ``JSON_OVERLAPS`` for its JSON columns (arrays included),
  and ``REGEXP`` (PCRE; its case follows the pattern's ``(?i)``/``(?-i)``, not the collation).
- SQLite has JSON1 and, from the driver, a ``regexp`` function (Python's ``re.search``);
  containment and overlap of JSON values are the functions ``tiddly_json_contains`` and
  ``tiddly_json_overlaps`` that Tiddly registers on each connection (``json_contains`` below).

Neither SQLite nor MariaDB has range or text-search types: those operators are PostgreSQL's.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Text, and_, bindparam, case, cast, false, func, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REGCONFIG
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.types import Boolean

from tiddly.errors import Unsupported

# -- containment: contains (@>), contained_by (<@), overlaps (&&) ---------------------------------

class Containment(ColumnElement):
    """``column <how> value``: ``how`` is "contains", "contained_by" or "overlaps"; ``holds`` what
    the column holds ("json", "array" or "range"); ``value`` a JSON value, a list (an array) or
    a range's text."""
    inherit_cache = False
    type = Boolean()

    def __init__(self, column, how: str, holds: str, value: Any):
        self.column, self.how, self.holds, self.value = column, how, holds, value

    @property
    def _from_objects(self):
        return self.column._from_objects


_PG_OPERATORS = {"contains": "@>", "contained_by": "<@", "overlaps": "&&"}


@compiles(Containment)
def _containment_postgresql(element: Containment, compiler, **kw):
    how, column = element.how, element.column
    if element.holds != "json":  # an array or a range, compared with a value of its own type
        value = bindparam(None, element.value, type_=column.type, unique=True)
        return compiler.process(column.op(_PG_OPERATORS[how], is_comparison=True)(value), **kw)
    document = cast(column, JSONB)
    value = cast(bindparam(None, json.dumps(element.value), type_=Text, unique=True), JSONB)
    if how == "overlaps":  # two JSON arrays share an item (PostgreSQL's && is for arrays and ranges)
        items = func.jsonb_array_elements(document).table_valued("value").alias()
        shared = select(1).select_from(items).where(
            value.op("@>", is_comparison=True)(func.jsonb_build_array(items.c.value))).exists()
        both_arrays = and_(func.jsonb_typeof(document) == "array", func.jsonb_typeof(value) == "array")
        return compiler.process(case((both_arrays, shared), else_=false()), **kw)
    return compiler.process(document.op(_PG_OPERATORS[how], is_comparison=True)(value), **kw)


@compiles(Containment, "mysql")
@compiles(Containment, "mariadb")
def _containment_mysql(element: Containment, compiler, **kw):
    column, value = element.column, _json_text(element)
    if element.how == "contains":
        return compiler.process(func.json_contains(column, value) == 1, **kw)
    if element.how == "contained_by":
        return compiler.process(func.json_contains(value, column) == 1, **kw)
    return compiler.process(func.json_overlaps(column, value) == 1, **kw)


@compiles(Containment, "sqlite")
def _containment_sqlite(element: Containment, compiler, **kw):
    column, value = element.column, _json_text(element)
    if element.how == "contains":
        return compiler.process(func.tiddly_json_contains(column, value) == 1, **kw)
    if element.how == "contained_by":
        return compiler.process(func.tiddly_json_contains(value, column) == 1, **kw)
    return compiler.process(func.tiddly_json_overlaps(column, value) == 1, **kw)


def _json_text(element: Containment):
    if element.holds != "json":
        raise Unsupported(f"'{element.how}' on ranges and arrays needs PostgreSQL's range and array types")
    return bindparam(None, json.dumps(element.value), type_=Text, unique=True)


def json_contains(document: str | None, candidate: str | None) -> int | None:
    """SQLite's ``tiddly_json_contains``: whether one JSON text contains the other, as
    PostgreSQL's jsonb ``@>`` decides it (an object its keys' values; an array each of the
    candidate's items, in any order; an array a lone scalar)."""
    if document is None or candidate is None:
        return None
    try:
        return int(_contains(json.loads(document), json.loads(candidate), top=True))
    except ValueError:
        return 0


def json_overlaps(document: str | None, candidate: str | None) -> int | None:
    """SQLite's ``tiddly_json_overlaps``: two JSON arrays share an item."""
    if document is None or candidate is None:
        return None
    try:
        left, right = json.loads(document), json.loads(candidate)
    except ValueError:
        return 0
    if not isinstance(left, list) or not isinstance(right, list):
        return 0
    return int(any(_contains(item, other) and _contains(other, item) for item in left for other in right))


def _contains(value: Any, candidate: Any, top: bool = False) -> bool:
    if isinstance(value, dict):
        return isinstance(candidate, dict) and all(
            key in value and _contains(value[key], item) for key, item in candidate.items())
    if isinstance(value, list):
        if isinstance(candidate, list):
            return all(any(_contains(item, wanted) for item in value) for wanted in candidate)
        return top and not isinstance(candidate, dict) and any(_same(item, candidate) for item in value)
    return _same(value, candidate)


def _same(value: Any, candidate: Any) -> bool:
    """Two JSON scalars are equal as jsonb sees them: 1 and 1.0 are, 1 and true are not."""
    if isinstance(value, (dict, list)) or isinstance(candidate, (dict, list)):
        return False
    if isinstance(value, bool) or isinstance(candidate, bool):
        return type(value) is type(candidate) and value == candidate
    return value == candidate


# -- ranges: strictly left (<<), strictly right (>>), not right (&<), not left (&>), adjacent (-|-) ---

class RangeRelation(ColumnElement):
    inherit_cache = False
    type = Boolean()

    def __init__(self, column, operator: str, value: str):
        self.column, self.operator, self.value = column, operator, value

    @property
    def _from_objects(self):
        return self.column._from_objects


@compiles(RangeRelation)
def _range_postgresql(element: RangeRelation, compiler, **kw):
    value = bindparam(None, element.value, type_=element.column.type, unique=True)
    return compiler.process(element.column.op(element.operator, is_comparison=True)(value), **kw)


@compiles(RangeRelation, "mysql")
@compiles(RangeRelation, "mariadb")
@compiles(RangeRelation, "sqlite")
def _range_elsewhere(element: RangeRelation, compiler, **kw):
    raise Unsupported("range operators need PostgreSQL's range types")


# -- regular expressions ------------------------------------------------------------------------

class Matches(ColumnElement):
    """``column`` matches the regular expression ``pattern`` (``insensitive``: whatever the case)."""
    inherit_cache = False
    type = Boolean()

    def __init__(self, column, pattern: str, insensitive: bool):
        self.column, self.pattern, self.insensitive = column, pattern, insensitive

    @property
    def _from_objects(self):
        return self.column._from_objects


@compiles(Matches)
def _matches_postgresql(element: Matches, compiler, **kw):
    pattern = bindparam(None, element.pattern, type_=Text, unique=True)
    return compiler.process(element.column.op("~*" if element.insensitive else "~", is_comparison=True)(pattern),
                            **kw)


@compiles(Matches, "mysql")
@compiles(Matches, "mariadb")
def _matches_mysql(element: Matches, compiler, **kw):
    # MariaDB's REGEXP follows the collation's case unless the pattern says otherwise (PCRE's flags)
    return _regexp(element, compiler, "(?i)" if element.insensitive else "(?-i)", **kw)


@compiles(Matches, "sqlite")
def _matches_sqlite(element: Matches, compiler, **kw):
    # the driver's regexp() is Python's re.search: case-sensitive unless told
    return _regexp(element, compiler, "(?i)" if element.insensitive else "", **kw)


def _regexp(element: Matches, compiler, flag: str, **kw):
    pattern = bindparam(None, flag + element.pattern, type_=Text, unique=True)
    return compiler.process(element.column.op("REGEXP", is_comparison=True)(pattern), **kw)


# -- full-text search ----------------------------------------------------------------------------

# PostgREST's operators and the function that reads their query
TSQUERY = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery",
           "wfts": "websearch_to_tsquery"}


class TextSearch(ColumnElement):
    """``column`` (a tsvector, or text made one with ``to_tsvector``) matches ``query`` read by
    ``kind``'s function, in the text search configuration ``config`` (None: the database's)."""
    inherit_cache = False
    type = Boolean()

    def __init__(self, column, kind: str, query: str, config: str | None, tsvector: bool):
        self.column, self.kind, self.query, self.config, self.tsvector = column, kind, query, config, tsvector

    @property
    def _from_objects(self):
        return self.column._from_objects


@compiles(TextSearch)
def _search_postgresql(element: TextSearch, compiler, **kw):
    query = bindparam(None, element.query, type_=Text, unique=True)
    reader = getattr(func, TSQUERY[element.kind])
    document = element.column
    if element.config is None:
        tsquery = reader(query)
        if not element.tsvector:
            document = func.to_tsvector(document)
    else:
        config = cast(bindparam(None, element.config, type_=Text, unique=True), REGCONFIG)
        tsquery = reader(config, query)
        if not element.tsvector:
            document = func.to_tsvector(config, document)
    return compiler.process(document.op("@@", is_comparison=True)(tsquery), **kw)


@compiles(TextSearch, "mysql")
@compiles(TextSearch, "mariadb")
@compiles(TextSearch, "sqlite")
def _search_elsewhere(element: TextSearch, compiler, **kw):
    raise Unsupported("full-text search (fts, plfts, phfts, wfts) needs PostgreSQL's text search")


# -- JSON paths ------------------------------------------------------------------------------------

class JsonPath(ColumnElement):
    """The value at ``path`` (keys, and integers for array indexes, negative from the end) in a
    JSON ``column``: JSON, or with ``text`` its text (PostgREST's ``->`` and ``->>``); null
    where the path leads nowhere."""
    inherit_cache = False

    def __init__(self, column, path: tuple, text: bool):
        self.column, self.path, self.text = column, path, text
        self.type = Text() if text else JSON()

    @property
    def _from_objects(self):
        return self.column._from_objects


@compiles(JsonPath)
def _json_path_postgresql(element: JsonPath, compiler, **kw):
    path = bindparam(None, [str(key) for key in element.path], type_=ARRAY(Text), unique=True)
    return compiler.process(cast(element.column, JSONB).op("#>>" if element.text else "#>")(path), **kw)


@compiles(JsonPath, "sqlite")
def _json_path_sqlite(element: JsonPath, compiler, **kw):
    # SQLite's -> answers JSON text (3.38); as text, a value as PostgreSQL's ->> writes it
    path = _json_path(element.path, last="#")
    if not element.text:
        return compiler.process(element.column.op("->")(path), **kw)
    kind = func.json_type(element.column, path)
    text = case((kind.in_(("true", "false")), kind), else_=cast(func.json_extract(element.column, path), Text))
    return compiler.process(text, **kw)


@compiles(JsonPath, "mysql")
@compiles(JsonPath, "mariadb")
def _json_path_mysql(element: JsonPath, compiler, **kw):
    found = func.json_extract(element.column, _json_path(element.path))
    return compiler.process(func.json_unquote(found) if element.text else found, **kw)


# -- the order of JSON values --------------------------------------------------------------------

class JsonOrder(ColumnElement):
    """What orders rows by the JSON value at ``path`` in ``column``: PostgreSQL's jsonb order;
    SQLite's own order of the extracted values (NULL, numbers, text); on MariaDB the value's
    text (MariaDB has no JSON order), its first 1,024 characters."""
    inherit_cache = False

    def __init__(self, column, path: tuple):
        self.column, self.path = column, path
        self.type = JSON()

    @property
    def _from_objects(self):
        return self.column._from_objects


@compiles(JsonOrder)
def _json_order_postgresql(element: JsonOrder, compiler, **kw):
    path = bindparam(None, [str(key) for key in element.path], type_=ARRAY(Text), unique=True)
    return compiler.process(cast(element.column, JSONB).op("#>")(path), **kw)


@compiles(JsonOrder, "sqlite")
def _json_order_sqlite(element: JsonOrder, compiler, **kw):
    return compiler.process(func.json_extract(element.column, _json_path(element.path, last="#")), **kw)


@compiles(JsonOrder, "mysql")
@compiles(JsonOrder, "mariadb")
def _json_order_mysql(element: JsonOrder, compiler, **kw):
    text = func.json_unquote(func.json_extract(element.column, _json_path(element.path)))
    return compiler.process(func.left(text, 1024), **kw)


def _json_path(path: tuple, last: str = ""):
    """``$."a"[0]``: SQLite's and MariaDB's JSON path, as a bound parameter. An index from the
    end is ``[#-1]`` to SQLite (``last="#"``), ``[-1]`` to MariaDB."""
    steps = "".join((f"[{last}{key}]" if key < 0 else f"[{key}]") if isinstance(key, int) else "." + json.dumps(key)
                    for key in path)
    return bindparam(None, "$" + steps, type_=Text, unique=True)


# -- query plans ---------------------------------------------------------------------------------

EXPLAIN_OPTIONS = ("analyze", "verbose", "settings", "buffers", "wal")


class Explained(Executable, ClauseElement):
    """PostgreSQL's EXPLAIN of ``statement``, in ``format`` ("json" or "text"), with ``options``
    (names of ``EXPLAIN_OPTIONS``; ANALYZE runs the statement). Other databases' plans are
    another thing altogether: there it is ``Unsupported``."""
    inherit_cache = False

    def __init__(self, statement, format: str, options: frozenset[str]):
        self.statement, self.format, self.options = statement, format, options


@compiles(Explained)
def _explained_postgresql(element: Explained, compiler, **kw):
    options = [f"FORMAT {'JSON' if element.format == 'json' else 'TEXT'}"]
    options += [name.upper() for name in EXPLAIN_OPTIONS if name in element.options]
    return f"EXPLAIN ({', '.join(options)}) " + compiler.process(element.statement, **kw)


@compiles(Explained, "mysql")
@compiles(Explained, "mariadb")
@compiles(Explained, "sqlite")
def _explained_elsewhere(element: Explained, compiler, **kw):
    raise Unsupported("query plans (application/vnd.pgrst.plan) are PostgreSQL's EXPLAIN")
