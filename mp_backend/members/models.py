"""Members and the WeChat identities (one openid per app) that lead to them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..models_base import ExactString, created_at_column

MEMBER_STATUSES = ("active", "frozen", "lost")


class Member(db.Model):  # type: ignore[name-defined]
    __tablename__ = "member"
    id: Mapped[int] = mapped_column(primary_key=True)
    card_no: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    birthday: Mapped[date | None] = mapped_column()
    unionid: Mapped[str | None] = mapped_column(ExactString(64), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="active")
    subscribed: Mapped[bool] = mapped_column(default=False)
    # Set by activation (members/activation.py): phone, name and birthday given, card number issued.
    activated_at: Mapped[datetime | None] = mapped_column()
    home_store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"), index=True)
    created_at: Mapped[datetime] = created_at_column()
    openids: Mapped[list[MemberOpenid]] = relationship(back_populates="member")
    __table_args__ = (CheckConstraint("status IN ('active', 'frozen', 'lost')", name="status_known"),)


class MemberOpenid(db.Model):  # type: ignore[name-defined]
    """An openid is per app: the same person has one in the official account and one in the mini program."""

    __tablename__ = "member_openid"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    appid: Mapped[str] = mapped_column(ExactString(32))
    openid: Mapped[str] = mapped_column(ExactString(64))
    created_at: Mapped[datetime] = created_at_column()
    member: Mapped[Member] = relationship(back_populates="openids")
    __table_args__ = (
        UniqueConstraint("appid", "openid", name="uq_member_openid_app_openid"),
        UniqueConstraint("member_id", "appid", name="uq_member_openid_member_app"),
    )
