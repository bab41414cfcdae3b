"""Wallets and the append-only ledger.

A wallet has three columns: ``principal_fen`` (paid-in money), ``bonus_fen`` (gift money) and
``held_fen`` (money frozen by open holds, already taken out of principal and bonus). The member's
available balance is principal + bonus. Every change to a wallet is exactly one ``ledger_entry`` row,
written in the same transaction, carrying the delta of each column and each column's value after it.
Rows are never updated or deleted: triggers in the schema refuse both (see the migration
``b7e1c2d4a9f0``), so append-only is a rule of the database, not a convention of this code.

``payment_refundable`` is the one mutable companion: per refunded payment, what it took and what its
refunds gave back so far, guarded by CHECK constraints and a guarded UPDATE, so that no isolation level
or race lets refunds exceed the payment.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column

ENTRY_KINDS = ("credit", "debit", "hold", "capture", "void", "refund", "withdrawal", "reversal")


class Wallet(db.Model):  # type: ignore[name-defined]
    __tablename__ = "wallet"
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), primary_key=True, autoincrement=False)
    principal_fen: Mapped[int] = mapped_column(BigId, default=0)
    bonus_fen: Mapped[int] = mapped_column(BigId, default=0)
    held_fen: Mapped[int] = mapped_column(BigId, default=0)
    # What the ledger must know about the member: a frozen or lost card takes no new money and pays
    # nothing (captures, voids, refunds and withdrawals still settle). Set by the members service.
    frozen: Mapped[bool] = mapped_column(default=False, server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("principal_fen >= 0", name="principal_non_negative"),
        CheckConstraint("bonus_fen >= 0", name="bonus_non_negative"),
        CheckConstraint("held_fen >= 0", name="held_non_negative"),
    )


class LedgerEntry(db.Model):  # type: ignore[name-defined]
    __tablename__ = "ledger_entry"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("wallet.member_id"))
    kind: Mapped[str] = mapped_column(String(12))
    # The amount the caller asked for (debit, hold, capture, refund ...); always > 0.
    amount_fen: Mapped[int] = mapped_column(BigId)
    principal_delta_fen: Mapped[int] = mapped_column(BigId)
    bonus_delta_fen: Mapped[int] = mapped_column(BigId)
    held_delta_fen: Mapped[int] = mapped_column(BigId)
    principal_after_fen: Mapped[int] = mapped_column(BigId)
    bonus_after_fen: Mapped[int] = mapped_column(BigId)
    held_after_fen: Mapped[int] = mapped_column(BigId)
    # refund -> the debit or capture it refunds; capture/void -> the hold; reversal -> the credit.
    related_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    # Set by capture, void and reversal: an entry can be closed once only, whatever the race.
    closes_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"), unique=True)
    # A hold whose caller named its buckets (``ledger.hold(buckets=...)``: a recharge refund takes back
    # exactly what the recharge gave): the principal it named, the rest of its amount being bonus. NULL:
    # split by the spending policy. ``ledger check`` accepts a named split only when the deltas are it.
    split_principal_fen: Mapped[int | None] = mapped_column(BigId)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"))
    operator: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(ExactString(64))
    idempotency_key: Mapped[str] = mapped_column(ExactString(128), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint(
            "kind IN ('credit', 'debit', 'hold', 'capture', 'void', 'refund', 'withdrawal', 'reversal')",
            name="kind_known",
        ),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint(
            "principal_after_fen >= 0 AND bonus_after_fen >= 0 AND held_after_fen >= 0", name="after_non_negative"
        ),
        Index("ix_ledger_entry_member_id_id", "member_id", "id"),
        Index("ix_ledger_entry_related_entry_id", "related_entry_id"),
        Index("ix_ledger_entry_reference", "reference"),
        Index("ix_ledger_entry_created_at", "created_at"),
    )


class PaymentRefundable(db.Model):  # type: ignore[name-defined]
    """What a payment (debit or capture) took per bucket and what its refunds gave back so far.

    Created by the first refund of a payment. Every refund raises ``refunded_*`` with a guarded UPDATE
    (``WHERE refunded + x <= taken``) backed by CHECK constraints: the database itself refuses a refund
    beyond the payment, whatever the isolation level or the race.
    """

    __tablename__ = "payment_refundable"
    payment_entry_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("ledger_entry.id"), primary_key=True, autoincrement=False
    )
    member_id: Mapped[int] = mapped_column(ForeignKey("wallet.member_id"), index=True)
    taken_principal_fen: Mapped[int] = mapped_column(BigId)
    taken_bonus_fen: Mapped[int] = mapped_column(BigId)
    refunded_principal_fen: Mapped[int] = mapped_column(BigId, default=0)
    refunded_bonus_fen: Mapped[int] = mapped_column(BigId, default=0)
    __table_args__ = (
        CheckConstraint("taken_principal_fen >= 0 AND taken_bonus_fen >= 0", name="taken_non_negative"),
        CheckConstraint("refunded_principal_fen >= 0 AND refunded_bonus_fen >= 0", name="refunded_non_negative"),
        CheckConstraint(
            "refunded_principal_fen <= taken_principal_fen AND refunded_bonus_fen <= taken_bonus_fen",
            name="refunded_within_taken",
        ),
    )
