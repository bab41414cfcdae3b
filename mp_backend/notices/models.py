"""The notification log: one row per ledger entry notified (UNIQUE), so a retried job sends nothing twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column

# sending: claimed by a job (a crash here leaves it claimed: at most once, never twice);
# sent; skipped (no official-account openid, no template configured); failed (WeChat refused: retried).
NOTICE_STATUSES = ("sending", "sent", "skipped", "failed")


class BalanceNotice(db.Model):  # type: ignore[name-defined]
    __tablename__ = "balance_notice"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_entry.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    status: Mapped[str] = mapped_column(String(10))
    openid: Mapped[str | None] = mapped_column(ExactString(64))
    template_id: Mapped[str | None] = mapped_column(String(64))
    msgid: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(default=1)
    detail: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("status IN ('sending', 'sent', 'skipped', 'failed')", name="status_known"),
        CheckConstraint("attempts >= 1", name="attempts_positive"),
    )
