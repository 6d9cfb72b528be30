"""The typed operations every way in produces and ``execute`` runs (DESIGN section 10). Pure data.

A dialect (Tiddly's JSON language in ``web/api``, PostgREST's grammar in ``web/postgrest``,
the patient monitor's routes, the command line's import) parses a request against the
registry as its caller sees it into one of these: a ``Read``, or a write (``Insert``,
``Upsert``, ``Put``, ``Update``, ``Delete``, ``Import``, or an extension's own operation).
Every name in a plan is already resolved to the registry's ``ColumnSpec`` and
``RelationSpec`` and every value already checked against its column, so nothing below the
dialects parses text again. ``reads`` and ``writes`` name the tables an operation touches:
``execute`` decides from them, and from nothing else, who may run it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Union

from tiddly.registry import ColumnSpec, RelationSpec, TableSpec
from tiddly.services.etags import Precondition

# -- conditions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Derived:
    """A value computed from a readable column, named ``name`` in the rows: one inside a JSON
    column (``path``: its keys, and integers for array indexes; ``text``: the last step gives
    the value as text, PostgREST's ``->>``), and/or one cast to ``cast``, a name of
    ``query.CASTS``. Filters and orders take it where they take a column."""
    name: str
    source: ColumnSpec
    path: tuple[str | int, ...] = ()
    text: bool = False
    cast: str | None = None

    @property
    def nullable(self) -> bool:
        return True


Value = Union[ColumnSpec, Derived]


@dataclass(frozen=True)
class Compare:
    """``column <op> value``: ``op`` is a name in ``query.OPERATORS``; ``value`` is checked
    (a column value; a list of them for in/nin; a pair for between; None/True/False for is)."""
    column: Value
    op: str
    value: Any = None


@dataclass(frozen=True)
class AllOf:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class Not:
    item: "Condition"


Condition = Union[Compare, AllOf, AnyOf, Not]


def conjoin(conditions: Iterable["Condition | None"]) -> "Condition | None":
    """The conditions ANDed (None: no condition at all)."""
    present = tuple(c for c in conditions if c is not None)
    if not present:
        return None
    return present[0] if len(present) == 1 else AllOf(present)


# -- reads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderTerm:
    """One ordering term. ``via`` names a to-one include of the same read whose column orders
    the rows (``stores(name) desc``): ``column`` is then the related table's."""
    column: Value
    descending: bool = False
    nulls: str | None = None  # "first", "last" or None (the database's own placement)
    via: str | None = None


@dataclass(frozen=True)
class Include:
    """Related rows through ``relation``, loaded with one query per relation and level.
    ``read`` is what is read of them: its ``limit`` and ``offset`` are per parent."""
    relation: RelationSpec
    read: "Read"
    exists: bool | None = None  # only parents with (True) or without (False) a matching related row
    loaded: bool = True         # False: it only filters the parents (PostgREST's empty embed)
    key: str | None = None      # the key its rows go under (None: the relation's name)

    @property
    def name(self) -> str:
        return self.key or self.relation.name


@dataclass(frozen=True)
class Function:
    """An aggregate output: ``name`` is a key of ``aggregate.FUNCTIONS``; ``column`` None for count();
    ``cast``: a name of ``query.CASTS`` its result is cast to."""
    alias: str
    name: str
    column: ColumnSpec | None = None
    cast: str | None = None


@dataclass(frozen=True)
class Aggregate:
    """A grouped (or distinct) read. ``outputs`` are its rows' columns as specs (the group
    columns, then one per function), which the read's ``order`` and ``having`` name. ``joins``:
    to-one includes whose tables are left-joined to the read's (their where in the join's ON,
    their own ``includes`` joined to them in turn), so that ``group`` and ``functions`` may name
    their columns; a group value that is a ``Derived`` is named as it says in the rows."""
    group: tuple[Value, ...]
    functions: tuple[Function, ...]
    distinct: bool
    outputs: dict[str, ColumnSpec]
    having: Condition | None = None
    joins: tuple[Include, ...] = ()


@dataclass(frozen=True)
class Read:
    """Rows of ``table``: the columns to answer (and values derived from them), the filter, the
    order, a page."""
    table: TableSpec
    columns: tuple[Value, ...]
    where: Condition | None = None
    order: tuple[OrderTerm, ...] = ()
    limit: int | None = None                  # None: every row
    offset: int = 0
    count: bool = False                       # also count every matching row
    estimate: str | None = None               # "planned": the count is the planner's estimate (PostgreSQL);
                                              # "estimated": exact, unless the estimate passes the page
    after: tuple | None = None                # keyset: only the rows after these values of ``order``
    includes: tuple[Include, ...] = ()
    aggregate: Aggregate | None = None
    key: tuple | None = None                  # exactly the row with this primary key
    keys: tuple[tuple, ...] | None = None     # the rows with these primary keys, in this order

    @property
    def reads(self) -> frozenset[str]:
        return frozenset({self.table.name}).union(*(inc.read.reads for inc in self.includes))

    @property
    def writes(self) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True)
class Explain:
    """The database's plan for ``read`` (PostgreSQL's EXPLAIN): ``format`` "json" or "text";
    ``options`` from ``storage.expressions.EXPLAIN_OPTIONS`` (``analyze`` runs the read)."""
    read: Read
    format: str = "json"
    options: frozenset[str] = frozenset()

    @property
    def reads(self) -> frozenset[str]:
        return self.read.reads

    @property
    def writes(self) -> frozenset[str]:
        return frozenset()


@dataclass
class ReadResult:
    rows: list[dict]
    count: int | None = None
    last: tuple | None = None  # the last row's values of the order (a full page: where the next starts)


@dataclass
class Context:
    """What a runner gets beside its session and operation: the settings, and the related rows
    the answer may still embed (``limits.Budget``)."""
    config: Any
    budget: Any


# -- writes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One row a write changed: what the change feed and other after-commit hooks receive."""
    table: str
    op: str    # "insert", "update" or "delete"; "call": a stored function that may write ran (services/functions.py)
    key: tuple  # () for a call: which rows it changed is the database's to know
    row: dict | None = field(default=None, compare=False)  # its readable columns, when the write read them back


@dataclass
class Written:
    """What a write did: the primary keys of its rows in the request's order, the rows when it
    read them back (``returning``, or the row a write by key answers), and its changes."""
    keys: list[tuple] = field(default_factory=list)
    rows: list[dict] | None = None
    count: int = 0
    created: bool | None = None
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Nested:
    """Rows of a one-to-many relation inserted with their new parent (their link is filled in)."""
    relation: RelationSpec
    table: TableSpec
    rows: tuple[dict, ...]


class _Write:
    """What every write plan has: the table it writes, and what it reads back. ``retryable``:
    running it again after a deadlock does the same (its input is plain data)."""
    table: TableSpec
    returning: Read | None
    retryable = True

    @property
    def writes(self) -> frozenset[str]:
        return frozenset({self.table.name})

    @property
    def reads(self) -> frozenset[str]:
        return self.returning.reads if self.returning is not None else frozenset()


@dataclass(frozen=True)
class Insert(_Write):
    """New rows (checked values by column name): one, with its ``children`` (nested rows of
    one-to-many relations), or ``bulk`` (all or none; an error names the failing item)."""
    table: TableSpec
    rows: tuple[dict, ...]
    bulk: bool = False
    children: tuple[Nested, ...] = ()
    returning: Read | None = None

    @property
    def writes(self) -> frozenset[str]:
        return frozenset({self.table.name, *(child.table.name for child in self.children)})


@dataclass(frozen=True)
class Upsert(_Write):
    """Rows inserted, or merged into the row with the same ``on`` values (``ignore``: left alone).
    ``defaults``: columns every row writes, a row that leaves one out writing the column's
    default (PostgREST's ``columns=`` with ``missing=default``)."""
    table: TableSpec
    rows: tuple[dict, ...]
    on: tuple[ColumnSpec, ...]
    ignore: bool = False
    returning: Read | None = None
    defaults: tuple[str, ...] = ()


@dataclass(frozen=True)
class Put(_Write):
    """One row by primary key: ``values`` set on it if it exists, else it is created with them."""
    table: TableSpec
    key: tuple
    values: dict
    precondition: Precondition | None = None
    returning: Read | None = None


@dataclass(frozen=True)
class Update(_Write):
    """``values`` set on the row with ``key``, or on the rows ``where`` matches (the first ``limit``
    after ``offset`` in ``order``, when given)."""
    table: TableSpec
    values: dict
    key: tuple | None = None
    where: Condition | None = None
    precondition: Precondition | None = None
    order: tuple[OrderTerm, ...] = ()
    limit: int | None = None
    offset: int = 0
    returning: Read | None = None


@dataclass(frozen=True)
class Delete(_Write):
    """The row with ``key``, or the rows ``where`` matches (optionally the first ``limit``)."""
    table: TableSpec
    key: tuple | None = None
    where: Condition | None = None
    precondition: Precondition | None = None
    order: tuple[OrderTerm, ...] = ()
    limit: int | None = None
    offset: int = 0
    returning: Read | None = None


@dataclass(frozen=True)
class Import(_Write):
    """Rows streamed from a body or a file: ``rows`` yields (line number, checked values) once,
    so an import cannot be run twice (``retryable``)."""
    table: TableSpec
    rows: Iterator[tuple[int, dict]]
    returning: Read | None = None
    retryable = False


Write = Union[Insert, Upsert, Put, Update, Delete, Import]
