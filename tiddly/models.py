"""The declarative Base and the shipped demo schema.

Column policy is declared beside the column, in ``info={"policy": ...}``:
``hidden`` (never returned, never filterable), ``read_only`` (returned, never
written by a client) or ``write_only_hashed`` (written, hashed on the way in,
never returned). Auto-generated integer primary keys are read-only without
saying so. ``registry.py`` reads these declarations.
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT, MEDIUMTEXT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# MySQL/MariaDB compare text case-insensitively by default; binary collation
# gives the same = and LIKE semantics as PostgreSQL and SQLite.
TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"
    __table_args__ = TABLE_ARGS

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password: Mapped[Optional[str]] = mapped_column(String(255), info={"policy": "write_only_hashed"})
    name: Mapped[Optional[str]] = mapped_column(String(255))


class Dual(Base):
    __tablename__ = "dual"
    __table_args__ = TABLE_ARGS

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[Optional[str]] = mapped_column(Text)


class Book(Base):
    __tablename__ = "books"
    __table_args__ = TABLE_ARGS

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    author: Mapped[str] = mapped_column(String(255))
    year: Mapped[Optional[int]] = mapped_column(Integer)
    isbn: Mapped[Optional[str]] = mapped_column(String(32), unique=True)


class Store(Base):
    __tablename__ = "stores"
    __table_args__ = TABLE_ARGS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    items: Mapped[list["Item"]] = relationship(back_populates="store", passive_deletes=True)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = TABLE_ARGS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    price: Mapped[float] = mapped_column(Double)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    store: Mapped[Store] = relationship(back_populates="items")


class Secret(Base):
    """A key shared by every worker, e.g. the one that signs pagination cursors (see cursor.py)."""
    __tablename__ = "tiddly_secrets"
    __table_args__ = {**TABLE_ARGS, "info": {"internal": True}}

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(128), info={"policy": "hidden"})


# -- internal tables: the gateway's own state, never exposed by the endpoint -----
# Times are naive UTC (MySQL's DATETIME has no zone).

INTERNAL = {**TABLE_ARGS, "info": {"internal": True}}


class ApiKey(Base):
    """An API key. Only the SHA-256 of the key is stored; the key is shown once, at creation."""
    __tablename__ = "api_keys"
    __table_args__ = INTERNAL

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, info={"policy": "hidden"})
    scope: Mapped[str] = mapped_column(String(10))        # read | write | admin
    tables: Mapped[Optional[str]] = mapped_column(Text)   # comma-separated names; NULL: every table
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, info={"policy": "read_only"})
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)


class LoginToken(Base):
    """A bearer token from POST /-/login, stored as its SHA-256. No foreign key (the
    user table may be a user's own): a request joins on the user, so the token dies with it."""
    __tablename__ = "login_tokens"
    __table_args__ = INTERNAL

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, info={"policy": "hidden"})
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, info={"policy": "read_only"})
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class IdempotencyKey(Base):
    """A write's Idempotency-Key and its first response (see idempotency.py)."""
    __tablename__ = "idempotency_keys"
    __table_args__ = INTERNAL

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and canonical body
    status: Mapped[Optional[int]] = mapped_column(Integer)  # null until the response is stored
    response: Mapped[Optional[str]] = mapped_column(Text().with_variant(LONGTEXT(), "mysql", "mariadb"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


# -- the patient monitor (DESIGN section 6; the service is tiddly.monitor.patients) ----------

class UTCDateTime(TypeDecorator):
    """A UTC instant: stored naive (in UTC, to the microsecond on every database), read back aware."""
    impl = DateTime
    cache_ok = True

    @property
    def python_type(self):  # what the registry checks values against
        return dt.datetime

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(DATETIME(fsp=6))  # plain DATETIME drops the microseconds
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=dt.timezone.utc) if value is not None else None


class Patient(Base):
    """A room's current occupant. Written only through PUT /patients (and the original
    server's routes), never through the generic endpoint: a turnover must keep its rules."""
    __tablename__ = "patients"
    __table_args__ = {**TABLE_ARGS, "info": {"read_only": True}}

    room_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    patient_mrn: Mapped[int] = mapped_column(BigInteger)
    patient_name: Mapped[Optional[str]] = mapped_column(String(255))
    # GET /new_cpap_pressure/<room>/<value> sets it; a turnover clears it.
    prescribed_cpap_pressure: Mapped[Optional[int]] = mapped_column(Integer)
    admitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # This stay's readings are the room's readings for this MRN with a larger id, so a
    # patient who comes back to the same room starts with a fresh view.
    readings_after_id: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every write that claims the room; 1 means "created by this transaction".
    version: Mapped[int] = mapped_column(Integer, default=1)


class PatientReading(Base):
    """One CPAP reading, one row: appending costs the same at any history length.
    Never updated or deleted (read-only through the endpoint); kept by MRN forever."""
    __tablename__ = "patient_readings"
    __table_args__ = (
        Index("ix_patient_readings_stay", "room_number", "patient_mrn", "id"),
        Index("ix_patient_readings_mrn_time", "patient_mrn", "timestamp"),
        Index("ix_patient_readings_room_time", "room_number", "timestamp"),
        {**TABLE_ARGS, "info": {"read_only": True}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_number: Mapped[int] = mapped_column(Integer)
    patient_mrn: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # None: the original server's clients uploaded a measured reading with the pressure box empty.
    CPAP_pressure: Mapped[Optional[int]] = mapped_column(Integer)
    breath_rate: Mapped[float] = mapped_column(Double)
    apnea_count: Mapped[Optional[int]] = mapped_column(Integer)
    flow_image: Mapped[Optional[str]] = mapped_column(Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb"))


# The database refuses impossible readings too (not only the checks in tiddly.monitor.patients).
for _column in ("CPAP_pressure", "breath_rate", "apnea_count"):
    PatientReading.__table__.append_constraint(
        CheckConstraint(PatientReading.__table__.c[_column] >= 0, name=f"ck_patient_readings_{_column}"))


def internal_tables() -> list:
    """The gateway's own tables (keys, tokens, ...), which exist whatever schema is exposed."""
    return [t for t in Base.metadata.sorted_tables if t.info.get("internal")]
