"""The declarative Base and the shipped demo schema.

Column policy is declared beside the column, in ``info={"policy": ...}``:
``hidden`` (never returned, never filterable), ``read_only`` (returned, never
written by a client) or ``write_only_hashed`` (written, hashed on the way in,
never returned). Auto-generated integer primary keys are read-only without
saying so. ``registry.py`` reads these declarations.
"""
from __future__ import annotations

from typing import Optional

from sqlalchemy import Double, ForeignKey, Integer, String, Text
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
