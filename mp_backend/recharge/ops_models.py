"""Recharges outside WeChat Pay: at the store's counter (cash, card terminal) and from uploaded files.

An offline recharge is keyed by its store and the receipt number the clerk types in (UNIQUE): the same
receipt again answers the first result and credits nothing. A batch is keyed by the hash of its rows
(UNIQUE), each of its rows by (batch, row number), and each row's ledger credit by ``batch:<id>:<row>``,
so a file uploaded twice, or a job interrupted and run again, credits every row exactly once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column

OFFLINE_METHODS = ("cash", "card_terminal")
BATCH_STATUSES = ("pending", "running", "done")
BATCH_ROW_STATUSES = ("pending", "applied", "failed")


class OfflineRecharge(db.Model):  # type: ignore[name-defined]
    __tablename__ = "offline_recharge"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("store.id"))
    receipt_no: Mapped[str] = mapped_column(ExactString(64))
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("recharge_rule.id"), index=True)
    # What the rule gave at the time (the same columns as a recharge order's snapshot).
    amount_fen: Mapped[int] = mapped_column()
    bonus_fen: Mapped[int] = mapped_column(default=0)
    points: Mapped[int] = mapped_column(default=0)
    coupon_template_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_template.id"))
    coupon_qty: Mapped[int] = mapped_column(default=0)
    card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"))
    card_only_non_members: Mapped[bool] = mapped_column(default=False)
    coupons_granted: Mapped[int] = mapped_column(default=0)
    coupons_lapsed: Mapped[int] = mapped_column(default=0)
    card_outcome: Mapped[str | None] = mapped_column(String(16))
    reward_note: Mapped[str] = mapped_column(String(255), default="")
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    note: Mapped[str] = mapped_column(String(255), default="")
    # What defines the request: the same receipt with another member, amount or rule is a conflict.
    request_hash: Mapped[str] = mapped_column(String(64))
    principal_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    bonus_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("store_id", "receipt_no", name="uq_offline_recharge_store_receipt"),
        CheckConstraint("method IN ('cash', 'card_terminal')", name="method_known"),
        CheckConstraint("amount_fen > 0 AND amount_fen <= 100000000", name="amount_positive"),
        CheckConstraint("bonus_fen >= 0", name="bonus_non_negative"),
        CheckConstraint("points >= 0", name="points_non_negative"),
        CheckConstraint(
            "coupon_qty >= 0 AND coupons_granted >= 0 AND coupons_lapsed >= 0", name="coupons_non_negative"
        ),
    )


class RechargeBatch(db.Model):  # type: ignore[name-defined]
    __tablename__ = "recharge_batch"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # SHA-256 of the validated rows (member, amount, note), not of the file's bytes: an .xlsx saved
    # again, or the same rows as .csv, is the same batch.
    content_sha256: Mapped[str] = mapped_column(ExactString(64), unique=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    total: Mapped[int] = mapped_column()
    total_fen: Mapped[int] = mapped_column(BigId)
    applied: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    note: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'done')", name="status_known"),
        CheckConstraint("total > 0 AND total_fen > 0", name="total_positive"),
        CheckConstraint("applied >= 0 AND failed >= 0 AND applied + failed <= total", name="progress_within_total"),
    )


class RechargeBatchRow(db.Model):  # type: ignore[name-defined]
    __tablename__ = "recharge_batch_row"
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("recharge_batch.id"), primary_key=True)
    row_no: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # the file's line number
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    amount_fen: Mapped[int] = mapped_column()
    note: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    error: Mapped[str] = mapped_column(String(255), default="")
    __table_args__ = (
        CheckConstraint("amount_fen > 0 AND amount_fen <= 100000000", name="amount_positive"),
        CheckConstraint("row_no > 0", name="row_no_positive"),
        CheckConstraint("status IN ('pending', 'applied', 'failed')", name="status_known"),
        Index("ix_recharge_batch_row_batch_id_status", "batch_id", "status"),
    )
