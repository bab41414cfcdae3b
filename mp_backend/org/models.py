"""HQ -> regions -> stores, and the staff who work in them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import ExactString, created_at_column

ROLES = ("hq_admin", "region_manager", "store_manager", "clerk")


class Merchant(db.Model):  # type: ignore[name-defined]
    """The HQ: one row per deployment, holding the merchant-wide settings."""

    __tablename__ = "merchant"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # The 5,000-yuan named prepaid-card limit by default (DESIGN.md section 3).
    principal_cap_fen: Mapped[int] = mapped_column(default=500_000)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("principal_cap_fen >= 0", name="cap_non_negative"),)


class Region(db.Model):  # type: ignore[name-defined]
    __tablename__ = "region"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    stores: Mapped[list[Store]] = relationship(back_populates="region")


class Store(db.Model):  # type: ignore[name-defined]
    __tablename__ = "store"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    created_at: Mapped[datetime] = created_at_column()
    region: Mapped[Region] = relationship(back_populates="stores")


class Staff(db.Model):  # type: ignore[name-defined]
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(ExactString(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at_column()
    region: Mapped[Region | None] = relationship()
    store: Mapped[Store | None] = relationship()
    __table_args__ = (
        CheckConstraint("role IN ('hq_admin', 'region_manager', 'store_manager', 'clerk')", name="role_known"),
        CheckConstraint("role <> 'region_manager' OR region_id IS NOT NULL", name="region_manager_has_region"),
        CheckConstraint("role NOT IN ('store_manager', 'clerk') OR store_id IS NOT NULL", name="store_staff_has_store"),
    )


class AuditLog(db.Model):  # type: ignore[name-defined]
    """Who did what sensitive thing, and why (staff creation, offline withdrawals, reversals)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
