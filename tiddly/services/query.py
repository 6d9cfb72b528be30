"""A read plan -> SQLAlchemy: its conditions, its order, the page's SELECT and COUNT. Pure: no
Flask, no session.

Operators are declared once, as data, in ``OPERATORS``: this compiler, the JSON language's
parser and its error messages (web/api), the OpenAPI document and docs/API.md all read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Integer,
    Numeric,
    Select,
    SmallInteger,
    Text,
    and_,
    cast,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from tiddly import storage  # storage also writes NULLS FIRST/LAST for MySQL and MariaDB
from tiddly.errors import BadValue
from tiddly.registry import ColumnSpec, holds
from tiddly.services import cursor
from tiddly.services.plan import (
    AllOf,
    Compare,
    Condition,
    Derived,
    Include,
    Not,
    OrderTerm,
    Read,
    Value,
)
from tiddly.storage.expressions import (
    Containment,
    JsonOrder,
    JsonPath,
    Matches,
    RangeRelation,
    TextSearch,
)


@dataclass(frozen=True)
class Operator:
    name: str
    accepts: str  # "value", "list", "pair", "pattern", "is", "structure", "range", "regex", "search"
    build: Callable[[Any, Any], ColumnElement]
    doc: str


def _eq(col, value):
    return col.is_(None) if value is None else col == value


def _ne(col, value):
    return col.is_not(None) if value is None else col != value


def _containment(how: str):
    return lambda col, value: Containment(col, how, holds(col.type), value)


def _range(operator: str):
    return lambda col, value: RangeRelation(col, operator, value)


def _search(kind: str):
    return lambda col, value: TextSearch(col, kind, value[0], value[1], holds(col.type) == "tsvector")


OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Operator("eq", "value", _eq, "equal to (`null`: IS NULL)"),
    Operator("ne", "value", _ne, "not equal to (`null`: IS NOT NULL); rows whose value is NULL never match"),
    Operator("lt", "value", lambda c, v: c < v, "less than"),
    Operator("lte", "value", lambda c, v: c <= v, "less than or equal to"),
    Operator("gt", "value", lambda c, v: c > v, "greater than"),
    Operator("gte", "value", lambda c, v: c >= v, "greater than or equal to"),
    Operator("in", "list", lambda c, v: c.in_(v), "equal to one of a list"),
    Operator("nin", "list", lambda c, v: c.not_in(v), "equal to none of a list"),
    Operator("like", "pattern", lambda c, v: c.like(v), "matches a SQL LIKE pattern (`%`, `_`), case-sensitive"),
    Operator("ilike", "pattern", lambda c, v: c.ilike(v), "matches a SQL LIKE pattern, case-insensitive"),
    Operator("between", "pair", lambda c, v: c.between(v[0], v[1]), "between two values, inclusive: `[low, high]`"),
    Operator("is", "is", lambda c, v: c.is_(v), "IS `null`, `true` or `false`"),
    Operator("contains", "structure", _containment("contains"),
             "a JSON value holding the one given (an object its keys and values, an array its items); "
             "an array (PostgreSQL) holding every item of the list; a range (PostgreSQL) holding all of the "
             "range given"),
    Operator("contained_by", "structure", _containment("contained_by"),
             "the other way round: held by the JSON value, the list or the range given"),
    Operator("overlaps", "structure", _containment("overlaps"),
             "a JSON array or an array sharing an item with the list; a range sharing a value with the range"),
    Operator("strictly_left", "range", _range("<<"), "a range (PostgreSQL) wholly before the range given"),
    Operator("strictly_right", "range", _range(">>"), "a range (PostgreSQL) wholly after the range given"),
    Operator("not_right", "range", _range("&<"),
             "a range (PostgreSQL) that does not extend after the range given"),
    Operator("not_left", "range", _range("&>"),
             "a range (PostgreSQL) that does not extend before the range given"),
    Operator("adjacent", "range", _range("-|-"), "a range (PostgreSQL) adjacent to the range given"),
    Operator("match", "regex", lambda c, v: Matches(c, v, False),
             "matches a regular expression (PostgreSQL's, MariaDB's PCRE, Python's `re` on SQLite), case-sensitive"),
    Operator("imatch", "regex", lambda c, v: Matches(c, v, True), "matches a regular expression, case-insensitive"),
    Operator("fts", "search", _search("fts"),
             "a text search document (PostgreSQL's tsvector, or a text column, made one) matching the query "
             "read by `to_tsquery` (`&`, `|`, `!`), in the configuration given (else the database's)"),
    Operator("plfts", "search", _search("plfts"), "the same, the query read by `plainto_tsquery` (plain words)"),
    Operator("phfts", "search", _search("phfts"), "the same, the query read by `phraseto_tsquery` (a phrase)"),
    Operator("wfts", "search", _search("wfts"),
             "the same, the query read by `websearch_to_tsquery` (as a search box writes it)"),
)}

# The longest regular expression a filter may hold (SQLite runs them in Python, with no time limit).
MAX_PATTERN_LENGTH = 1000


def check_operand(op: Operator, col: ColumnSpec, value: Any) -> Any:
    """The operand of a structured, range, regex or search operator, checked against its column
    (which must be of a kind the operator reads): every way in checks its values here."""
    what = col.holds
    if op.accepts == "structure":
        if what not in ("json", "array", "range"):
            raise BadValue(f"'{op.name}' on '{col.name}' needs a JSON, array or range column", column=col.name)
        if what == "range" and not isinstance(value, str):
            raise BadValue(f"'{op.name}' on '{col.name}' takes a range's text, e.g. \"[1,5)\"", column=col.name)
        if (what == "array" or op.name == "overlaps" and what == "json") and not isinstance(value, list):
            raise BadValue(f"'{op.name}' on '{col.name}' takes a list", column=col.name)
        return value
    if op.accepts == "range":
        if what != "range" or not isinstance(value, str):
            raise BadValue(f"'{op.name}' on '{col.name}' needs a range column (PostgreSQL) and a range's text",
                           column=col.name)
        return value
    if op.accepts == "regex":
        if col.kind != "string" or what is not None or not isinstance(value, str):
            raise BadValue(f"'{op.name}' on '{col.name}' needs a text column and a string pattern", column=col.name)
        if len(value) > MAX_PATTERN_LENGTH or "\x00" in value:
            raise BadValue(f"a regular expression holds at most {MAX_PATTERN_LENGTH} characters", column=col.name)
        return value
    assert op.accepts == "search"
    query, config = value if isinstance(value, (list, tuple)) and len(value) == 2 else (value, None)
    if not isinstance(query, str) or not (config is None or isinstance(config, str)) or "\x00" in query:
        raise BadValue(f"'{op.name}' takes a query, or [query, configuration]", column=col.name)
    if what != "tsvector" and (col.kind != "string" or what is not None):
        raise BadValue(f"'{op.name}' on '{col.name}' needs a text search document or a text column", column=col.name)
    return query, config


# The largest OFFSET every database takes (a signed 64-bit integer): checked before any SQL runs.
MAX_OFFSET = 2**63 - 1

# The types a value may be cast to (a ``Derived``'s cast), each with the kind of value it gives.
CASTS: dict[str, tuple[Any, str]] = {
    "text": (Text, "string"), "varchar": (Text, "string"), "char": (Text, "string"),
    "int": (Integer, "integer"), "int2": (SmallInteger, "integer"), "int4": (Integer, "integer"),
    "integer": (Integer, "integer"), "smallint": (SmallInteger, "integer"), "int8": (BigInteger, "integer"),
    "bigint": (BigInteger, "integer"), "numeric": (Numeric, "decimal"), "decimal": (Numeric, "decimal"),
    "float": (Float, "number"), "float4": (Float, "number"), "float8": (Float, "number"),
    "real": (Float, "number"), "double precision": (Float, "number"),
    "bool": (Boolean, "boolean"), "boolean": (Boolean, "boolean"),
}

# How a column of the plan becomes SQL: its table's column, or (a grouped read) the subquery's.
Columns = Callable[[ColumnSpec], ColumnElement]


def _own(col: ColumnSpec) -> ColumnElement:
    return col.column


def value_of(value: Value, columns: Columns = _own) -> ColumnElement:
    """A column, or a value derived from one (a JSON path, a cast), as SQL."""
    if isinstance(value, ColumnSpec):
        return columns(value)
    expr = columns(value.source)
    if value.path:
        expr = JsonPath(expr, value.path, value.text)
    if value.cast is not None:
        expr = cast(expr, CASTS[value.cast][0])
    return expr


def derived_kind(value: Derived) -> str:
    """The kind of value a derived output holds (as ``ColumnSpec.kind``)."""
    if value.cast is not None:
        return CASTS[value.cast][1]
    if value.path:
        return "string" if value.text else "json"
    return value.source.kind


def selected(value: Value) -> ColumnElement:
    """What a SELECT lists for a value of a read's columns, named as the rows name it."""
    return value.column if isinstance(value, ColumnSpec) else value_of(value).label(value.name)


def where_clause(condition: Condition | None, columns: Columns = _own) -> ColumnElement:
    if condition is None:
        return true()
    if isinstance(condition, Compare):
        return OPERATORS[condition.op].build(value_of(condition.column, columns), condition.value)
    if isinstance(condition, Not):
        return not_(where_clause(condition.item, columns))
    parts = [where_clause(item, columns) for item in condition.items]
    if not parts:
        return true()
    return and_(*parts) if isinstance(condition, AllOf) else or_(*parts)


def order_clauses(read: Read, columns: Columns = _own) -> list:
    clauses = []
    for term in read.order:
        col = related_value(read, term) if term.via is not None else _order_value(term.column, columns)
        ordered = col.desc() if term.descending else col.asc()
        if term.nulls and (term.column.nullable or term.via is not None):  # a NOT NULL column needs none
            # NULLS FIRST/LAST; `storage` teaches MySQL/MariaDB to write it (no such syntax there).
            ordered = ordered.nulls_first() if term.nulls == "first" else ordered.nulls_last()
        clauses.append(ordered)
    return clauses


def _order_value(value: Value, columns: Columns) -> ColumnElement:
    """What orders by a value: a JSON value (``->``) orders as its database orders JSON values."""
    if isinstance(value, Derived) and value.path and not value.text and value.cast is None:
        return JsonOrder(columns(value.source), value.path)
    return value_of(value, columns)


def related_value(read: Read, term: OrderTerm) -> ColumnElement:
    """The value ``term`` orders by when it names a to-one include's column: the related row's,
    or NULL when the include's where leaves none (a correlated subquery)."""
    inc = next(inc for inc in read.includes if inc.name == term.via)
    _, related, columns, joined = _related(inc, read.table.table)
    return (select(value_of(term.column, columns)).select_from(related)
            .where(*joined, where_clause(inc.read.where, columns)).correlate(read.table.table).scalar_subquery())


def exists_clauses(read: Read, parent: FromClause | None = None) -> list:
    """The parents' conditions for includes with ``exists``: a correlated EXISTS (or NOT EXISTS)
    on the related table, with the include's where and its own children's conditions.
    ``parent``: the parents' FROM (their table, or its alias when the read is itself related)."""
    parent = read.table.table if parent is None else parent
    clauses = []
    for inc in read.includes:
        if inc.exists is None:
            continue
        table, related, columns, joined = _related(inc, parent)
        # Correlated with the parent alone: the related table is an alias of its own, so a table
        # that refers to itself, or one met again further down, is its own FROM there.
        found = select(1).select_from(related).where(
            *joined, where_clause(inc.read.where, columns), *exists_clauses(inc.read, table)) \
            .correlate(parent).exists()
        clauses.append(found if inc.exists else not_(found))
    return clauses


def _related(inc: Include, parent: FromClause) -> tuple[FromClause, FromClause, Columns, list]:
    """An include's table as an alias of its own, what to select from (the alias, joined to the
    junction of a many-to-many relation), how the plan's columns name its columns, and the
    conditions that join it to ``parent``."""
    related = inc.read.table.table.alias()

    def columns(col: ColumnSpec) -> ColumnElement:
        return related.c[col.name]
    junction = inc.relation.junction
    if junction is None:
        return related, related, columns, [related.c[remote] == parent.c[local]
                                           for local, remote in inc.relation.pairs]
    through = junction.table.alias()
    joined = [through.c[middle] == parent.c[local] for local, middle in junction.source]
    joined += [through.c[middle] == related.c[remote] for middle, remote in junction.target]
    return related, related.join(through, and_(*joined[len(junction.source):])), columns, joined[:len(junction.source)]


def filter_clause(read: Read, dialect_name: str, keyset: bool = True) -> ColumnElement:
    """Everything that chooses the rows: the where, the includes' exists, the keyset cursor."""
    parts = [where_clause(read.where), *exists_clauses(read)]
    if read.after is not None and keyset:
        parts.append(cursor.after_clause(read.order, read.after, dialect_name))
    return and_(*parts)


def build_select(read: Read, dialect_name: str, columns: tuple[Value, ...] | None = None) -> Select:
    """The page's SELECT: ``columns`` (default: the read's) of the rows it chooses, in its order."""
    chosen = read.columns if columns is None else columns
    order = order_clauses(read) or storage.insertion_order(dialect_name, read.table.table)
    return (select(*(selected(c) for c in chosen)).where(filter_clause(read, dialect_name))
            .order_by(*order).limit(read.limit).offset(read.offset or None))


def build_count(read: Read, dialect_name: str) -> Select:
    """How many rows the read's filter matches, whatever its page (and its cursor)."""
    return select(func.count()).select_from(read.table.table).where(filter_clause(read, dialect_name, keyset=False))


def estimate_statement(read: Read, dialect_name: str) -> Select:
    """What the planner estimates a read's count from: its rows, whatever its page."""
    return select(literal(1)).select_from(read.table.table).where(filter_clause(read, dialect_name, keyset=False))


def body_statement(read: Read, dialect_name: str) -> Select:
    """The read as one statement that builds its JSON answer in the database (PostgreSQL's
    json_agg, its includes as correlated subqueries): what a plan of the read shows, as
    PostgREST's plans show the statement that builds its body. It names only the columns the
    read selects and filters (a plan's VERBOSE output lists them)."""
    page = build_select(read, dialect_name)
    for inc in read.includes:
        if inc.loaded:
            page = page.add_columns(_embedded(inc, read.table.table).label(inc.name))
    rows = page.subquery("pgrst_source")
    return select(func.coalesce(func.json_agg(rows.table_valued()), literal_column("'[]'::json")))


def _embedded(inc: Include, parent: FromClause):
    """An include's rows as JSON, correlated with its parent: a list, or one object (or null)."""
    table, related, columns, joined = _related(inc, parent)
    fields = [(c.name, value_of(c, columns)) for c in inc.read.columns]
    fields += [(child.name, _embedded(child, table)) for child in inc.read.includes if child.loaded]
    objects = [func.jsonb_build_object(*(part for name, value in fields[start:start + 50]
                                         for part in (literal(name, Text), value)))
               for start in range(0, len(fields), 50)] or [func.jsonb_build_object()]
    document = objects[0]
    for more in objects[1:]:
        document = document.op("||")(more)
    order = order_clauses(inc.read, columns)
    value = func.jsonb_agg(aggregate_order_by(document, *order) if order else document) \
        if inc.relation.many else document
    found = select(value).select_from(related).where(*joined, where_clause(inc.read.where, columns),
                                                     *exists_clauses(inc.read, table))
    return found.correlate(parent).limit(None if inc.relation.many else 1).scalar_subquery()
