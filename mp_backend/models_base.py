"""Shared column helpers for the typed models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import mapped_column

# BIGINT on MariaDB, INTEGER on SQLite (so that SQLite's rowid autoincrement still works).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def created_at_column():  # type: ignore[no-untyped-def]
    return mapped_column(default=utcnow, nullable=False)


def ExactString(length: int) -> String:  # noqa: N802 (a type factory, named like the types it makes)
    """A string compared byte for byte: MariaDB's default collation ignores case and trailing spaces,
    which would let idempotency key "K" replay "k" and merge two openids that differ only in case."""
    exact = mysql.VARCHAR(length, collation="utf8mb4_nopad_bin")
    return String(length).with_variant(exact, "mysql").with_variant(exact, "mariadb")  # type: ignore[return-value]
