"""Shared column helpers for the typed models."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import mapped_column

# BIGINT on MariaDB, INTEGER on SQLite (so that SQLite's rowid autoincrement still works).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def created_at_column():  # type: ignore[no-untyped-def]
    return mapped_column(default=utcnow, nullable=False)
