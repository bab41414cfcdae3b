"""The WeChat member card a member holds in WeChat's card wallet, and the log of what was sent to it.

One row per member (UNIQUE member_id) and per WeChat card code (UNIQUE card_id, code). The balance
and points on the WeChat card are a mirror of the ledger: every ledger change bumps ``sync_seq`` in
its own transaction (``ledger/card_mirror.py``); a push job sends the current values and records the
``sync_seq`` it read as ``pushed_seq``, so an older pending push finds nothing left to do.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column

# received: the member took the card (user_get_card); submitted: filled in the activation form;
# activating: claimed by the activation job; activated; rejected: the form was refused (phone taken,
# bad data, another person's card), see ``detail``.
WECHAT_CARD_STATUSES = ("received", "submitted", "activating", "activated", "rejected")


class WechatCard(db.Model):  # type: ignore[name-defined]
    __tablename__ = "wechat_card"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), unique=True)
    card_id: Mapped[str] = mapped_column(ExactString(64))
    code: Mapped[str] = mapped_column(ExactString(64))
    openid: Mapped[str] = mapped_column(ExactString(64))
    status: Mapped[str] = mapped_column(String(12))
    membership_number: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(String(255), default="")
    claimed_at: Mapped[datetime | None] = mapped_column()  # the activation job's claim
    # The mirror: sync_seq counts ledger changes, pushed_seq is the last one WeChat was sent.
    sync_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    pushed_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    push_token: Mapped[str | None] = mapped_column(ExactString(32))
    push_claimed_at: Mapped[datetime | None] = mapped_column()
    pushed_balance_fen: Mapped[int | None] = mapped_column(BigInteger)
    pushed_points: Mapped[int | None] = mapped_column(BigInteger)
    pushed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()
    activated_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("card_id", "code", name="uq_wechat_card_card_code"),
        CheckConstraint(
            "status IN ('received', 'submitted', 'activating', 'activated', 'rejected')", name="status_known"
        ),
    )


class WechatCardPush(db.Model):  # type: ignore[name-defined]
    """The card's notification log: each activation and each balance/points push, with WeChat's answer."""

    __tablename__ = "wechat_card_push"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    wechat_card_id: Mapped[int] = mapped_column(ForeignKey("wechat_card.id"))
    action: Mapped[str] = mapped_column(String(10))
    seq: Mapped[int] = mapped_column(BigInteger)
    balance_fen: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    errcode: Mapped[int | None] = mapped_column()
    detail: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("action IN ('activate', 'update')", name="action_known"),
        CheckConstraint("status IN ('sent', 'failed')", name="status_known"),
    )
