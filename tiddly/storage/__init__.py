"""Storage: engines, the per-request session scope, and every dialect difference, in one place.

``engines`` makes the engines (only this package creates them), ``database`` holds one
database's engines and its session scope (``Database.session()``, the request boundary),
``writers`` queues SQLite's writers and ``groups`` commits their writes together, ``committed``
runs what waits for a write scope's commit (``after_commit``), ``replicas`` chooses a read
replica (and keeps read-your-writes), ``dialects`` writes what each database writes
differently (``expressions``: the operators of structured values, regular expressions, text
search and query plans, compiled per database), ``errors`` turns driver errors into Tiddly's
typed errors, and ``catalog`` and ``functions`` read what a database's own catalog says of its
views, JSON columns and callable functions.
"""
from tiddly.storage.committed import after_commit
from tiddly.storage.database import Database
from tiddly.storage.dialects import (
    add_sum_parts,
    advance_sequence,
    column_default,
    insert_or_update,
    insertion_order,
    integer_sum,
)
from tiddly.storage.engines import (
    SHIPPED_DRIVERS,
    CannotOpen,
    StateHome,
    engine_url,
    make_engine,
)
from tiddly.storage.errors import Deadlock, translate_error
from tiddly.storage.replicas import Writer

__all__ = ["Database", "Writer", "after_commit", "CannotOpen", "StateHome", "SHIPPED_DRIVERS", "engine_url",
           "make_engine", "translate_error", "Deadlock", "insert_or_update", "insertion_order", "integer_sum",
           "add_sum_parts", "advance_sequence", "column_default"]
