"""The merchant's points rules and the points notification log (expiry reminders)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column


class PointsSettings(db.Model):  # type: ignore[name-defined]
    """One row: redemption and exchange rates, the member day. Rates are points per yuan (integers)."""

    __tablename__ = "points_settings"
    id: Mapped[int] = mapped_column(primary_key=True)
    redeem_points_per_yuan: Mapped[int] = mapped_column(default=100)  # 100 points = 1.00 yuan off an order
    redeem_max_percent: Mapped[int] = mapped_column(default=50)  # at most half of an order
    exchange_points_per_yuan: Mapped[int] = mapped_column(default=100)  # 100 points = 1.00 yuan bonus
    member_day: Mapped[int | None] = mapped_column()  # day of month, 1-28; None: no member day
    member_day_multiplier_percent: Mapped[int] = mapped_column(default=200)
    birthday_points: Mapped[int] = mapped_column(default=0, server_default="0")  # 0: a greeting only
    # points a purchase earns stay pending this many days (0: usable at once)
    pending_days: Mapped[int] = mapped_column(default=0, server_default="0")
    referral_points: Mapped[int] = mapped_column(default=0, server_default="0")  # per rewarded invitee
    referral_monthly_cap: Mapped[int] = mapped_column(default=10, server_default="10")  # rewards per inviter
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("redeem_points_per_yuan BETWEEN 1 AND 100000", name="redeem_rate_range"),
        CheckConstraint("redeem_max_percent BETWEEN 0 AND 100", name="redeem_max_percent_range"),
        CheckConstraint("exchange_points_per_yuan BETWEEN 1 AND 100000", name="exchange_rate_range"),
        CheckConstraint("member_day IS NULL OR member_day BETWEEN 1 AND 28", name="member_day_range"),
        CheckConstraint("member_day_multiplier_percent BETWEEN 100 AND 1000", name="member_day_multiplier_range"),
        CheckConstraint("birthday_points BETWEEN 0 AND 100000", name="birthday_points_range"),
        CheckConstraint("pending_days BETWEEN 0 AND 90", name="pending_days_range"),
        CheckConstraint("referral_points BETWEEN 0 AND 1000000", name="referral_points_range"),
        CheckConstraint("referral_monthly_cap BETWEEN 0 AND 10000", name="referral_monthly_cap_range"),
    )


class EarnRule(db.Model):  # type: ignore[name-defined]
    """Points per yuan recharged or spent; a store's own rule wins over the merchant-wide one (no store)."""

    __tablename__ = "points_earn_rule"
    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column("earned_on", String(10))  # "trigger" is reserved in SQL
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"))
    points_per_yuan: Mapped[int] = mapped_column()
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("earned_on IN ('recharge', 'spend')", name="trigger_known"),
        CheckConstraint("points_per_yuan BETWEEN 0 AND 1000", name="points_per_yuan_range"),
    )


class PointsAdjustment(db.Model):  # type: ignore[name-defined]
    """A manual change of a member's points: who, why; the points entry carries the change itself."""

    __tablename__ = "points_adjustment"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    delta: Mapped[int] = mapped_column(BigId)
    reason: Mapped[str] = mapped_column(String(255))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    idempotency_key: Mapped[str] = mapped_column(ExactString(128), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("delta <> 0", name="delta_non_zero"),)


# pending: planned, not yet claimed; sending: claimed by a job (sent with a client_msg_id, so a job
# that died after WeChat accepted it sends the same message id again and WeChat drops the repeat);
# sent; retry: rate-limited, tried again later; failed: another WeChat error; gave_up: the member
# cannot receive it (not subscribed, blocked); skipped: no openid or no template configured.
REMINDER_STATUSES = ("pending", "sending", "sent", "retry", "failed", "gave_up", "skipped")


class PointsReminder(db.Model):  # type: ignore[name-defined]
    """The points notification log: one row per member, expiry date and offset (UNIQUE)."""

    __tablename__ = "points_reminder"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    kind: Mapped[str] = mapped_column(String(10), default="expiry")
    expiry_date: Mapped[date] = mapped_column()
    offset_days: Mapped[int] = mapped_column()
    points: Mapped[int] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(10))
    openid: Mapped[str | None] = mapped_column(ExactString(64))
    template_id: Mapped[str | None] = mapped_column(String(64))
    client_msg_id: Mapped[str] = mapped_column(ExactString(64), unique=True)
    msgid: Mapped[str | None] = mapped_column(String(32))
    # mp: official-account template message; wxa: mini-program subscribe message (one consent each)
    channel: Mapped[str] = mapped_column(String(4), default="mp", server_default="mp")
    attempts: Mapped[int] = mapped_column(default=0)
    errcode: Mapped[int | None] = mapped_column()
    detail: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    claimed_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("member_id", "kind", "expiry_date", "offset_days", name="uq_points_reminder_once"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'retry', 'failed', 'gave_up', 'skipped')", name="status_known"
        ),
        CheckConstraint("kind IN ('expiry', 'birthday')", name="kind_known"),
        CheckConstraint("offset_days BETWEEN 0 AND 366", name="offset_days_range"),
        CheckConstraint("points >= 0", name="points_non_negative"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index("ix_points_reminder_status_id", "status", "id"),
        CheckConstraint("channel IN ('mp', 'wxa')", name="channel_known"),
    )


class ExpiryProgress(db.Model):  # type: ignore[name-defined]
    """Where the expiry job stopped: lots up to (expires_at, lot_id) are done. A run resumes here."""

    __tablename__ = "points_expiry_progress"
    id: Mapped[int] = mapped_column(primary_key=True)
    expires_at: Mapped[datetime | None] = mapped_column()
    lot_id: Mapped[int] = mapped_column(BigId, default=0)
    updated_at: Mapped[datetime] = created_at_column()


class SubscribeConsent(db.Model):  # type: ignore[name-defined]
    """One accepted mini-program subscribe-message consent: WeChat lets one message through per consent.

    The mini program reports what the member accepted in ``wx.requestSubscribeMessage``; a reminder
    uses (``used_at``) the oldest unused one of its template, in its claim transaction. WeChat's 43101
    answer (no consent left at WeChat's side) marks it ``refused``."""

    __tablename__ = "subscribe_consent"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    openid: Mapped[str] = mapped_column(ExactString(64))
    template_id: Mapped[str] = mapped_column(ExactString(64))
    status: Mapped[str] = mapped_column(String(8), default="unused")
    reminder_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("points_reminder.id"))
    created_at: Mapped[datetime] = created_at_column()
    used_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("status IN ('unused', 'used', 'refused')", name="status_known"),
        Index("ix_subscribe_consent_member_template", "member_id", "template_id", "status"),
    )


class PointsRefund(db.Model):  # type: ignore[name-defined]
    """What one refund did to the points of its payment (``payment_key``: ``payment:<id>``,
    ``till:<charge id>``, ``recharge:<out_trade_no>``): the points the payment earned that were due back
    (pro rata on the money refunded so far), how many were voided while pending, taken back, or could not
    be taken back (``shortfall``: the member had spent them), and the redeemed points given back.
    UNIQUE per payment and refund key: a refund acts on points once."""

    __tablename__ = "points_refund"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    payment_key: Mapped[str] = mapped_column(ExactString(128))
    refund_key: Mapped[str] = mapped_column(ExactString(128))
    refund_fen: Mapped[int] = mapped_column(BigId)
    payment_fen: Mapped[int] = mapped_column(BigId)
    due: Mapped[int] = mapped_column(BigId)
    voided: Mapped[int] = mapped_column(BigId)
    taken: Mapped[int] = mapped_column(BigId)
    shortfall: Mapped[int] = mapped_column(BigId)
    restored: Mapped[int] = mapped_column(BigId)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("payment_key", "refund_key", name="uq_points_refund_payment_refund"),
        CheckConstraint("refund_fen >= 0 AND refund_fen <= payment_fen", name="refund_within_payment"),
        CheckConstraint("voided >= 0 AND taken >= 0 AND shortfall >= 0 AND restored >= 0", name="counts_non_negative"),
        CheckConstraint("due = voided + taken + shortfall", name="due_is_accounted"),
    )


REFERRAL_STATUSES = ("bound", "rewarded", "capped")


class ReferralCode(db.Model):  # type: ignore[name-defined]
    """A member's invitation code (made on first ask), shared as a link."""

    __tablename__ = "referral_code"
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(ExactString(16), unique=True)
    created_at: Mapped[datetime] = created_at_column()


class Referral(db.Model):  # type: ignore[name-defined]
    """Who invited whom: one row per invitee (UNIQUE). ``bound`` until the invitee's first payment, then
    ``rewarded`` (the inviter got ``points``, counted in ``month``, the inviter's local month) or
    ``capped`` (the inviter had had the month's maximum)."""

    __tablename__ = "referral"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inviter_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    invitee_id: Mapped[int] = mapped_column(ForeignKey("member.id"), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="bound")
    points: Mapped[int] = mapped_column(BigId, default=0)
    month: Mapped[str | None] = mapped_column(String(7))
    created_at: Mapped[datetime] = created_at_column()
    rewarded_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("status IN ('bound', 'rewarded', 'capped')", name="status_known"),
        CheckConstraint("inviter_id <> invitee_id", name="not_self"),
        CheckConstraint("points >= 0", name="points_non_negative"),
        Index("ix_referral_inviter_id_month_status", "inviter_id", "month", "status"),
    )
