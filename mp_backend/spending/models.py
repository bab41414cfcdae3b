"""Pay passwords, order payments, their refunds, and refunds of WeChat Pay recharges.

Money is integer fen. What must never happen is refused by the database: named CHECK constraints on
every amount and counter (a part refunded never above the part paid), UNIQUE keys for every
idempotency key (the client's request id, the merchant's order number per member, our out_trade_no
and out_refund_no, WeChat's transaction and refund ids).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column

PAYMENT_STATUSES = ("pending", "paid", "failed")
REFUND_STATUSES = ("processing", "success", "failed")
MAX_FAILED_TRIES = 5


class PayPassword(db.Model):  # type: ignore[name-defined]
    """A member's 6-digit pay password (argon2 hash) and the count of wrong tries since the last right one.

    The count lives here, not only in Redis, so a restart or a second web process cannot reset it; it is
    raised by a guarded UPDATE (the database counts, never Python)."""

    __tablename__ = "pay_password"
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), primary_key=True, autoincrement=False)
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_count: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint(f"failed_count >= 0 AND failed_count < {MAX_FAILED_TRIES}", name="failed_count_range"),
    )


class OrderPayment(db.Model):  # type: ignore[name-defined]
    """A member's payment of a merchant's order: balance first, WeChat Pay for what balance does not cover.

    ``balance_fen`` was debited (``debit_entry_id``) or, for a mixed payment, held (``hold_entry_id``)
    and captured (``capture_entry_id``) once WeChat's notification for ``wechat_fen`` arrived, or voided
    (``void_entry_id``) when that payment failed or expired."""

    __tablename__ = "order_payment"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    order_no: Mapped[str] = mapped_column(ExactString(64))
    request_id: Mapped[str] = mapped_column(ExactString(64))
    amount_fen: Mapped[int] = mapped_column(BigId)  # the order's amount before the card discount
    discount_percent: Mapped[int] = mapped_column(default=100)
    discount_fen: Mapped[int] = mapped_column(BigId, default=0)
    payable_fen: Mapped[int] = mapped_column(BigId)
    # points redeemed at checkout and what they took off (part of ``discount_fen``, after the card discount)
    points_used: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    points_fen: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    balance_fen: Mapped[int] = mapped_column(BigId, default=0)
    wechat_fen: Mapped[int] = mapped_column(BigId, default=0)
    refunded_balance_fen: Mapped[int] = mapped_column(BigId, default=0)
    refunded_wechat_fen: Mapped[int] = mapped_column(BigId, default=0)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"))
    debit_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    hold_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    capture_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    void_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    # The WeChat Pay part: our out_trade_no (P...), the app the member came through, WeChat's answer.
    out_trade_no: Mapped[str | None] = mapped_column(ExactString(32), unique=True)
    appid: Mapped[str | None] = mapped_column(ExactString(32))
    mch_id: Mapped[str | None] = mapped_column(ExactString(32))
    openid: Mapped[str | None] = mapped_column(ExactString(64))
    sign_type: Mapped[str | None] = mapped_column(String(12))
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(ExactString(32), unique=True)
    failure: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("member_id", "order_no", name="uq_order_payment_member_order_no"),
        UniqueConstraint("member_id", "request_id", name="uq_order_payment_member_request_id"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("discount_percent BETWEEN 1 AND 100", name="discount_percent_range"),
        CheckConstraint("discount_fen >= 0 AND discount_fen < amount_fen", name="discount_range"),
        CheckConstraint("payable_fen = amount_fen - discount_fen", name="payable_is_amount_less_discount"),
        CheckConstraint("points_used >= 0", name="points_used_non_negative"),
        CheckConstraint("points_fen >= 0 AND points_fen <= discount_fen", name="points_within_discount"),
        CheckConstraint(
            "balance_fen >= 0 AND wechat_fen >= 0 AND balance_fen + wechat_fen = payable_fen", name="parts_sum"
        ),
        CheckConstraint(
            "refunded_balance_fen >= 0 AND refunded_balance_fen <= balance_fen", name="refunded_balance_within_part"
        ),
        CheckConstraint(
            "refunded_wechat_fen >= 0 AND refunded_wechat_fen <= wechat_fen", name="refunded_wechat_within_part"
        ),
        CheckConstraint("status IN ('pending', 'paid', 'failed')", name="status_known"),
        Index("ix_order_payment_status_created_at", "status", "created_at"),
        Index("ix_order_payment_order_no", "order_no"),
    )


class PaymentRefund(db.Model):  # type: ignore[name-defined]
    """A refund of an order payment: its balance part restored at once through the ledger, its WeChat
    part through WeChat Pay's refund API (``processing`` until the refund notification says SUCCESS)."""

    __tablename__ = "payment_refund"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(BigId, ForeignKey("order_payment.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    request_id: Mapped[str] = mapped_column(ExactString(64))
    amount_fen: Mapped[int] = mapped_column(BigId)
    balance_fen: Mapped[int] = mapped_column(BigId, default=0)
    wechat_fen: Mapped[int] = mapped_column(BigId, default=0)
    refund_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    out_refund_no: Mapped[str | None] = mapped_column(ExactString(32), unique=True)
    refund_id: Mapped[str | None] = mapped_column(ExactString(32), unique=True)  # WeChat's
    status: Mapped[str] = mapped_column(String(10), default="processing")
    operator: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    reason: Mapped[str] = mapped_column(String(255), default="")
    failure: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    settled_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("payment_id", "request_id", name="uq_payment_refund_payment_request_id"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint(
            "balance_fen >= 0 AND wechat_fen >= 0 AND balance_fen + wechat_fen = amount_fen", name="parts_sum"
        ),
        CheckConstraint("status IN ('processing', 'success', 'failed')", name="status_known"),
        Index("ix_payment_refund_payment_id", "payment_id"),
    )


class RechargeRefund(db.Model):  # type: ignore[name-defined]
    """The merchant refunds a WeChat Pay recharge: ``cash_fen`` goes back through WeChat Pay, and
    ``take_fen`` (the principal back plus the unspent bonus) is held from the wallet when asked and
    captured when WeChat confirms (voided when it fails). One refund per recharge order."""

    __tablename__ = "recharge_refund"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("recharge_order.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    policy: Mapped[str] = mapped_column(String(24))
    principal_fen: Mapped[int] = mapped_column(BigId)  # principal taken back
    bonus_fen: Mapped[int] = mapped_column(BigId)  # unspent bonus taken back
    bonus_spent_fen: Mapped[int] = mapped_column(BigId)  # deducted from the cash refund
    take_fen: Mapped[int] = mapped_column(BigId)
    cash_fen: Mapped[int] = mapped_column(BigId)
    hold_entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    settle_entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_entry.id"))
    out_refund_no: Mapped[str] = mapped_column(ExactString(32), unique=True)
    refund_id: Mapped[str | None] = mapped_column(ExactString(32), unique=True)  # WeChat's
    status: Mapped[str] = mapped_column(String(10), default="processing")
    coupons_voided: Mapped[int] = mapped_column(default=0)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    reason: Mapped[str] = mapped_column(String(255), default="")
    failure: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    settled_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("policy IN ('deduct_spent_bonus', 'refuse')", name="policy_known"),
        CheckConstraint("principal_fen > 0 AND bonus_fen >= 0 AND bonus_spent_fen >= 0", name="amounts_non_negative"),
        CheckConstraint("take_fen = principal_fen + bonus_fen", name="take_is_principal_and_bonus"),
        CheckConstraint(
            "cash_fen > 0 AND cash_fen = principal_fen - bonus_spent_fen", name="cash_is_principal_less_spent"
        ),
        CheckConstraint("coupons_voided >= 0", name="coupons_voided_non_negative"),
        CheckConstraint("status IN ('processing', 'success', 'failed')", name="status_known"),
    )
