"""Storage: engines, the per-request session scope, and every dialect difference, in one place.

``engines`` makes the engines (only this package creates them), ``database`` holds one
database's engines and its session scope (``Database.session()``, the request boundary),
``writers`` queues SQLite's writers and ``groups`` commits their writes together, ``committed``
runs what waits for a write scope's commit (``after_commit``), ``dialects`` writes what each
database writes differently, and ``errors`` turns driver errors into Tiddly's typed errors.
"""
from tiddly.storage.committed import after_commit
from tiddly.storage.database import Database
from tiddly.storage.dialects import add_sum_parts, advance_sequence, insert_or_update, integer_sum
from tiddly.storage.engines import SHIPPED_DRIVERS, CannotOpen, StateHome, engine_url, make_engine
from tiddly.storage.errors import translate_error

__all__ = ["Database", "after_commit", "CannotOpen", "StateHome", "SHIPPED_DRIVERS", "engine_url", "make_engine",
           "translate_error", "insert_or_update", "integer_sum", "add_sum_parts", "advance_sequence"]
