"""What one request may build: checked on its operation, whichever way in it came, before any
SQL runs (docs/security.md, "Limits"). Each bound is a setting (tiddly/config.py); a request
past one is a 400 that names the bound and the setting, never a database error.

Measured on the plan: the comparisons of every filter together (``max_conditions``: an
``or`` of thousands of terms overflows SQLite's expression depth and slows every database),
the values they hold (``max_filter_values``: each item of a list counts), the ordering terms
(``max_order_terms``) and how deep embeds nest (``max_embed_depth``). Measured while the
answer is read: the related rows one answer embeds in all (``max_embedded_rows``, see
``include.py``).
"""
from __future__ import annotations

from tiddly.config import Config
from tiddly.errors import BadQuery, ResultTooLarge
from tiddly.services.plan import AllOf, AnyOf, Compare, Condition, Explain, Not, Read


class Budget:
    """The related rows one answer may embed (``max_embedded_rows``), counted as the answer holds
    them: a related row embedded under two parents counts twice, so embeds that multiply
    (stores -> items -> stores -> items ...) are caught before the answer is written."""

    def __init__(self, most: float):
        self.most = most

    def fetched(self, rows: int) -> None:
        """One include's query read ``rows`` rows (it reads at most ``most + 1``)."""
        if rows > self.most:
            self._refuse()

    def check(self, rows: list[dict], includes) -> None:
        """The rows of a page, with their includes loaded, embed no more than ``most`` rows."""
        sizes: dict[int, int] = {}
        if sum(_embedded(row, includes, sizes) for row in rows) > self.most:
            self._refuse()

    def _refuse(self):
        raise ResultTooLarge(f"the answer would embed more than {self.most} related rows "
                             "(TIDDLY_MAX_EMBEDDED_ROWS): filter or limit its embeds")


def _embedded(row: dict, includes, sizes: dict[int, int]) -> int:
    """How many related rows ``row`` embeds at every depth (each embedded row remembered by
    identity, so a row shared by many parents is measured once and counted for each)."""
    known = sizes.get(id(row))
    if known is not None:
        return known
    total = 0
    for inc in includes:
        value = row.get(inc.name) if inc.loaded else None
        for related in value if isinstance(value, list) else [value] if value is not None else []:
            total += 1 + _embedded(related, inc.read.includes, sizes)
    sizes[id(row)] = total
    return total


def check(operation, config: Config) -> None:
    conditions = values = order = 0
    for read, depth in _reads(operation):
        if depth > config.max_embed_depth:
            raise BadQuery(f"embeds nest {depth} levels deep; at most {config.max_embed_depth} "
                           "(TIDDLY_MAX_EMBED_DEPTH)")
        for condition in (read.where, read.aggregate.having if read.aggregate else None):
            counted, held = _size(condition)
            conditions, values = conditions + counted, values + held
        order += len(read.order)
    if not isinstance(operation, (Read, Explain)):  # a write by filter (PATCH, DELETE)
        counted, held = _size(getattr(operation, "where", None))
        conditions, values = conditions + counted, values + held
        order += len(getattr(operation, "order", ()))
    _bound(conditions, config.max_conditions, "comparisons in its filters", "TIDDLY_MAX_CONDITIONS")
    _bound(values, config.max_filter_values, "values in its filters", "TIDDLY_MAX_FILTER_VALUES")
    _bound(order, config.max_order_terms, "ordering terms", "TIDDLY_MAX_ORDER_TERMS")


def _bound(found: int, most: int, what: str, setting: str) -> None:
    if found > most:
        raise BadQuery(f"the request holds {found} {what}; at most {most} ({setting})")


def _reads(operation):
    """(read, embedding depth) for every read an operation holds: itself, what it reads back,
    and their includes at every level."""
    roots = [operation] if isinstance(operation, Read) else []
    if isinstance(operation, Explain):
        roots.append(operation.read)
    returning = getattr(operation, "returning", None)
    if returning is not None:
        roots.append(returning)
    stack = [(read, 0) for read in roots]
    while stack:
        read, depth = stack.pop()
        yield read, depth
        stack += [(inc.read, depth + 1) for inc in read.includes]


def _size(condition: Condition | None) -> tuple[int, int]:
    """(comparisons, values) of a condition; a list's items are values, the list one comparison."""
    if condition is None:
        return 0, 0
    if isinstance(condition, Compare):
        return 1, len(condition.value) if isinstance(condition.value, list) else 1
    if isinstance(condition, Not):
        return _size(condition.item)
    assert isinstance(condition, (AllOf, AnyOf))
    sizes = [_size(item) for item in condition.items]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes)
