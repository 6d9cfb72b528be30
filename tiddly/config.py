"""Settings: one frozen object, read from the environment or given by the caller."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields, replace

DEFAULT_DATABASE_URL = "sqlite:///tiddly.db"


@dataclass(frozen=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    default_limit: int = 100          # rows per page when the query names no limit
    max_limit: int = 1000             # largest page a query may ask for
    max_body_bytes: int = 1_000_000   # request bodies above this are a 413
    max_where_depth: int = 8          # nesting of and/or/not in a where
    max_in_length: int = 1000         # items in an in/nin list
    max_conditions: int = 500         # comparisons in one request's filters, all together (a list counts once)
    max_filter_values: int = 10_000   # values in one request's filters, all together (each list item counts)
    max_order_terms: int = 50         # ordering terms in one request
    max_embed_depth: int = 8          # how deep includes/embeds nest
    max_embedded_rows: int = 10_000   # related rows one answer embeds, at every level together
    max_select_items: int = 1_000     # columns (aliases too) and embeds one PostgREST select names
    max_key_gap: int = 10_000         # how far above the highest key a client may choose a generated key
    max_bulk_rows: int = 10_000       # items in one bulk insert
    max_import_bytes: int = 2_000_000_000  # a CSV/NDJSON import body (streamed, not held in memory)
    max_string_length: int = 65_535   # characters in a value for a text column with no declared length
    statement_timeout_ms: int = 30_000  # PostgreSQL statement_timeout, MariaDB max_statement_time; 0 = none
    create_tables: bool = True        # create the models' tables on start when missing
    secret: str = field(default="", repr=False)  # signs cursors; empty: a random key stored in the database
    idempotency_ttl_s: int = 86_400   # how long an Idempotency-Key's stored response is replayed
    cors_origins: str = ""            # comma-separated origins browsers may call from ("*": any); none by default
    open_mode_allowed: bool = True    # serve without a key while none exists; `tiddly serve` allows it on loopback only
    login_token_ttl_s: int = 3600     # lifetime of a token from POST /-/login
    postgrest_path: str = "/rest/v1"  # where the PostgREST dialect answers; "" turns it off
    body_timeout_s: int = 30          # tiddly serve: each max_body_bytes of a body must arrive within this
    max_pending_bodies_per_client: int = 32  # tiddly serve: requests from one address whose body is arriving; 0: any
    max_header_bytes: int = 65_536    # tiddly serve: the request's headers, names and values, in all
    read_replicas: str = field(default="", repr=False)  # PostgreSQL standbys reads may go to: URLs, comma-separated
    replica_max_lag_s: float = 5.0    # a replica further behind the primary than this answers no read
    changes_retention_s: int = 86_400  # how long the change log keeps a change (GET /-/changes resumes within it)
    changes_poll_s: float = 0.1       # how often each worker reads the change log for others' writes
    changes_keepalive_s: float = 15.0  # a comment line on idle change streams this often
    direct_database_url: str = field(default="", repr=False)  # the primary with no pooler between (LISTEN)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Config":
        """Read ``TIDDLY_<FIELD>`` variables (and ``DATABASE_URL``), then apply overrides."""
        environ = os.environ if environ is None else environ
        values = {}
        url = environ.get("TIDDLY_DATABASE_URL") or environ.get("DATABASE_URL")
        if url:
            values["database_url"] = url
        for field in fields(cls):
            raw = environ.get("TIDDLY_" + field.name.upper())
            if raw is None or field.name == "database_url":
                continue
            values[field.name] = _parse(field.type, raw, field.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> "Config":
        return replace(self, **changes)

    @property
    def read_replica_urls(self) -> tuple[str, ...]:
        return tuple(url.strip() for url in self.read_replicas.split(",") if url.strip())

    @functools.cached_property  # read on every request (guard.py)
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())


def _parse(type_name: str, raw: str, name: str):
    if type_name == "int":
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"TIDDLY_{name.upper()} must be an integer, got {raw!r}") from None
    if type_name == "float":
        try:
            return float(raw)
        except ValueError:
            raise SystemExit(f"TIDDLY_{name.upper()} must be a number, got {raw!r}") from None
    if type_name == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw
