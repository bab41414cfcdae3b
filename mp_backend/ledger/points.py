"""Points: lots (what was earned, when it expires, what is left) and an append-only points ledger.

The minimal real thing the recharge rewards need; issue 14 builds spending, expiry jobs and levels on
it. A member's points balance is the sum of ``remaining`` over lots that have not expired. Every change
is one ``points_entry`` row with a UNIQUE idempotency key, written in the same transaction as the lot
it changes, under the member's wallet row lock (so two awards to one member never interleave).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import MemberNotFound, ValidationFailed
from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column, utcnow
from ..transaction import transactional
from .models import Wallet

DEFAULT_VALIDITY_DAYS = 2 * 365
MAX_POINTS = 100_000_000


class PointsLot(db.Model):  # type: ignore[name-defined]
    __tablename__ = "points_lot"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    amount: Mapped[int] = mapped_column(BigId)
    remaining: Mapped[int] = mapped_column(BigId)
    earned_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(32))
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        Index("ix_points_lot_member_id_expires_at", "member_id", "expires_at"),
    )


class PointsEntry(db.Model):  # type: ignore[name-defined]
    """Append-only: an award, and later spends and expiries (issue 14)."""

    __tablename__ = "points_entry"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"))
    kind: Mapped[str] = mapped_column(String(12))
    delta: Mapped[int] = mapped_column(BigId)
    balance_after: Mapped[int] = mapped_column(BigId)
    lot_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("points_lot.id"))
    reference: Mapped[str | None] = mapped_column(ExactString(64))
    idempotency_key: Mapped[str] = mapped_column(ExactString(128), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("kind IN ('award', 'spend', 'expire', 'reversal')", name="kind_known"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index("ix_points_entry_member_id_id", "member_id", "id"),
    )


lot_t = PointsLot.__table__
entry_t = PointsEntry.__table__


def balance(member_id: int, *, at: datetime | None = None) -> int:
    """Points the member holds now: the rest of every lot that has not expired."""
    moment = at or utcnow()
    total = db.session.execute(
        select(func.coalesce(func.sum(lot_t.c.remaining), 0)).where(
            lot_t.c.member_id == member_id, lot_t.c.expires_at > moment
        )
    ).scalar_one()
    return int(total)


@transactional
def award_points(
    member_id: int,
    points: int,
    *,
    key: str,
    source: str,
    reference: str | None = None,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> int:
    """Give ``points`` as a new lot; returns the member's balance after. Twice with one key: once."""
    if not isinstance(points, int) or isinstance(points, bool) or not 0 < points <= MAX_POINTS:
        raise ValidationFailed("积分必须是正整数", code="invalid_points")
    if not isinstance(key, str) or not key or len(key) > 128:
        raise ValidationFailed("请求号（幂等键）必须是 1-128 个字符", code="invalid_idempotency_key")
    conn = db.session.connection()
    # The wallet row is the member's lock for every balance, points included.
    locked = conn.execute(
        select(Wallet.__table__.c.member_id).where(Wallet.__table__.c.member_id == member_id).with_for_update()
    ).first()
    if locked is None:  # every member has a wallet: the ledger needs nothing else to know it exists
        raise MemberNotFound()
    done = conn.execute(select(entry_t.c.balance_after).where(entry_t.c.idempotency_key == key)).first()
    if done is not None:
        return int(done[0])
    now = utcnow()
    lot_id = conn.execute(
        insert(lot_t).values(
            member_id=member_id,
            amount=points,
            remaining=points,
            earned_at=now,
            expires_at=now + timedelta(days=validity_days),
            source=source[:32],
        )
    ).inserted_primary_key[0]
    after = balance(member_id, at=now)
    conn.execute(
        insert(entry_t).values(
            member_id=member_id,
            kind="award",
            delta=points,
            balance_after=after,
            lot_id=lot_id,
            reference=reference,
            idempotency_key=key,
            created_at=now,
        )
    )
    return after
