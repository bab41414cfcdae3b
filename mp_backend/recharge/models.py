"""Recharge rules, coupon templates and coupons, recharge orders and the anomalies of notifications.

Money is integer fen; the database refuses what must never happen (named CHECK constraints, UNIQUE
out_trade_no and transaction_id, coupon stock never below zero).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column

RULE_STATUSES = ("active", "archived")
# paid_uncredited: WeChat took the money while the card was frozen or lost; credited once it is active
ORDER_STATUSES = ("pending", "paid", "paid_uncredited", "closed")
COUPON_KINDS = ("amount_off", "discount", "threshold")


class RechargeSettings(db.Model):  # type: ignore[name-defined]
    """The merchant's recharge settings (one row per merchant; defaults when there is none)."""

    __tablename__ = "recharge_settings"
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), primary_key=True, autoincrement=False)
    free_amount_enabled: Mapped[bool] = mapped_column(default=False)
    free_min_fen: Mapped[int] = mapped_column(default=1_000)
    free_max_fen: Mapped[int] = mapped_column(default=500_000)
    __table_args__ = (CheckConstraint("free_min_fen > 0 AND free_max_fen >= free_min_fen", name="free_bounds"),)


class CouponTemplate(db.Model):  # type: ignore[name-defined]
    __tablename__ = "coupon_template"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(12))
    # amount_off / threshold: fen off; discount: percent paid (85 = 15 % off)
    value: Mapped[int] = mapped_column()
    threshold_fen: Mapped[int] = mapped_column(default=0)
    validity_days: Mapped[int] = mapped_column(default=30)
    stock: Mapped[int | None] = mapped_column()  # None: unlimited
    issue_until: Mapped[datetime | None] = mapped_column()  # no more issued after this
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("kind IN ('amount_off', 'discount', 'threshold')", name="kind_known"),
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind <> 'discount' OR value < 100", name="discount_below_100"),
        CheckConstraint("threshold_fen >= 0", name="threshold_non_negative"),
        CheckConstraint("validity_days > 0", name="validity_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_non_negative"),
    )


class RechargeRule(db.Model):  # type: ignore[name-defined]
    __tablename__ = "recharge_rule"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(ExactString(16), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column()
    bonus_fen: Mapped[int] = mapped_column(default=0)
    points: Mapped[int] = mapped_column(default=0)
    coupon_template_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_template.id"), index=True)
    coupon_qty: Mapped[int] = mapped_column(default=0)
    card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"), index=True)
    card_only_non_members: Mapped[bool] = mapped_column(default=False)
    starts_at: Mapped[datetime | None] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()
    all_stores: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(10), default="active")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("amount_fen > 0 AND amount_fen <= 100000000", name="amount_positive"),
        CheckConstraint("bonus_fen >= 0 AND bonus_fen <= amount_fen * 10", name="bonus_non_negative"),
        CheckConstraint("points >= 0", name="points_non_negative"),
        CheckConstraint("coupon_qty >= 0 AND coupon_qty <= 100", name="coupon_qty_range"),
        CheckConstraint("status IN ('active', 'archived')", name="status_known"),
        Index("ix_recharge_rule_status_sort_order", "status", "sort_order"),
    )


class RechargeRuleStore(db.Model):  # type: ignore[name-defined]
    """The stores a rule applies to, when it does not apply to all of them."""

    __tablename__ = "recharge_rule_store"
    rule_id: Mapped[int] = mapped_column(ForeignKey("recharge_rule.id"), primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("store.id"), primary_key=True)


class RechargeOrder(db.Model):  # type: ignore[name-defined]
    __tablename__ = "recharge_order"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    out_trade_no: Mapped[str] = mapped_column(ExactString(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("recharge_rule.id"))
    # The snapshot: what this order pays and gives, whatever the rule becomes later.
    rule_snapshot: Mapped[dict | None] = mapped_column(JSON)
    amount_fen: Mapped[int] = mapped_column()
    bonus_fen: Mapped[int] = mapped_column(default=0)
    points: Mapped[int] = mapped_column(default=0)
    coupon_template_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_template.id"))
    coupon_qty: Mapped[int] = mapped_column(default=0)
    card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"))
    card_only_non_members: Mapped[bool] = mapped_column(default=False)
    appid: Mapped[str] = mapped_column(ExactString(32))
    mch_id: Mapped[str] = mapped_column(ExactString(32))
    openid: Mapped[str] = mapped_column(ExactString(64))
    sign_type: Mapped[str] = mapped_column(String(12))
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    src: Mapped[str | None] = mapped_column(String(32))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    transaction_id: Mapped[str | None] = mapped_column(ExactString(32), unique=True)
    paid_via: Mapped[str | None] = mapped_column(String(12))  # notify | query
    coupons_granted: Mapped[int] = mapped_column(default=0)
    coupons_lapsed: Mapped[int] = mapped_column(default=0)
    card_outcome: Mapped[str | None] = mapped_column(String(16))
    reward_note: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("bonus_fen >= 0", name="bonus_non_negative"),
        CheckConstraint("points >= 0", name="points_non_negative"),
        CheckConstraint("coupon_qty >= 0", name="coupon_qty_non_negative"),
        CheckConstraint("status IN ('pending', 'paid', 'paid_uncredited', 'closed')", name="status_known"),
        CheckConstraint("sign_type IN ('MD5', 'HMAC-SHA256')", name="sign_type_known"),
        CheckConstraint("status IN ('pending', 'closed') OR transaction_id IS NOT NULL", name="paid_has_transaction"),
        Index("ix_recharge_order_member_id_id", "member_id", "id"),
        Index("ix_recharge_order_status_created_at", "status", "created_at"),
        Index("ix_recharge_order_rule_id", "rule_id"),
        Index("ix_recharge_order_src", "src"),
        Index("ix_recharge_order_store_id", "store_id"),
    )


class Coupon(db.Model):  # type: ignore[name-defined]
    __tablename__ = "coupon"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("coupon_template.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("recharge_order.id"))
    seq: Mapped[int] = mapped_column(default=1)  # nth coupon of that order
    valid_until: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(10), default="unused")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("status IN ('unused', 'used', 'expired')", name="status_known"),
        UniqueConstraint("order_id", "seq", name="uq_coupon_order_seq"),
    )


class RechargeAnomaly(db.Model):  # type: ignore[name-defined]
    """What the merchant must look at: a signed notification (or query answer) that did not agree with
    our order (nothing credited), or a payment credited or held in an unusual way (``member_frozen``:
    paid, held until the card is active; ``paid_after_close``; ``balance_cap_exceeded``)."""

    __tablename__ = "recharge_anomaly"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    out_trade_no: Mapped[str | None] = mapped_column(String(64), index=True)
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("recharge_order.id"))
    detail: Mapped[str] = mapped_column(String(255), default="")
    raw: Mapped[dict | None] = mapped_column(JSON)  # the fields WeChat sent, without the signature
    created_at: Mapped[datetime] = created_at_column()
