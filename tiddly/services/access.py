"""Who may do what: one decision, made from what an operation does (DESIGN section 10).

``decide(operation, principal)`` is the only place that says whether a caller may run an
operation: write scope on every table it writes, read scope on every table it reads, and
only tables the caller may use. It reads the operation's ``reads`` and ``writes``, never the
HTTP verb or a header that renames it. ``view(registry, principal)`` is the registry as the
caller sees it, which every dialect parses against, so a key limited to some tables cannot
even name another one.
"""
from __future__ import annotations

from tiddly.errors import Forbidden
from tiddly.registry import Registry, TableSpec
from tiddly.services.auth import Principal


def view(registry: Registry, principal: Principal | None) -> Registry:
    """The tables ``principal`` may use (None: nobody asked yet, every table), made once per
    distinct set of tables: a key limited to some learns nothing of the others."""
    return registry.view(None if principal is None else principal.tables)


def table(view: Registry, principal: Principal | None, name: str) -> TableSpec:
    """The table called ``name`` as the caller sees it. To a key limited to some tables, any
    other name (one that exists or not) is a 403 naming its own: nothing about the others."""
    if principal is not None and principal.tables is not None and name not in principal.tables:
        allowed(principal, "read", name)
    return view.get(name)


def decide(operation, principal: Principal) -> None:
    """A 403 unless ``principal`` may run ``operation``."""
    writes = operation.writes
    for table in sorted(writes):
        allowed(principal, "write", table)
    for table in sorted(operation.reads - writes):
        allowed(principal, "read", table)


def allowed(principal: Principal, scope: str, table: str | None = None) -> None:
    """A 403 unless ``principal`` may act with ``scope`` on ``table`` (None: no table)."""
    if not principal.allows(scope):
        raise Forbidden(f"'{principal.name}' has {principal.scope} scope; this request needs {scope}",
                        scope=principal.scope, needed=scope)
    if table is not None and principal.tables is not None and table not in principal.tables:
        raise Forbidden(f"'{principal.name}' may not use this table; it may use: "
                        f"{', '.join(sorted(principal.tables))}")
