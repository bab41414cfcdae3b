"""Card types and the card a member holds (minimal: issue 14 adds benefits, upgrades and levels).

A member holds at most one card (UNIQUE member_id). A card gift from a recharge is granted once; when
the gift is "only for non-members" it is never granted to someone who already holds a card, and a
member who holds a card of the same or a higher rank keeps it (the gift lapses, and the caller
records why).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..models_base import ExactString, created_at_column, utcnow
from ..transaction import transactional


class CardType(db.Model):  # type: ignore[name-defined]
    __tablename__ = "card_type"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(ExactString(32), unique=True)
    name: Mapped[str] = mapped_column(String(32))
    level_rank: Mapped[int] = mapped_column(default=1)  # higher is better
    discount_percent: Mapped[int] = mapped_column(default=100)  # 95 = 5 % off
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("discount_percent BETWEEN 1 AND 100", name="discount_percent_range"),
        CheckConstraint("level_rank >= 0", name="level_rank_non_negative"),
    )


class MemberCard(db.Model):  # type: ignore[name-defined]
    __tablename__ = "member_card"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), unique=True)
    card_type_id: Mapped[int] = mapped_column(ForeignKey("card_type.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(ExactString(64))
    granted_at: Mapped[datetime] = created_at_column()


GRANTED, UPGRADED, LAPSED_HOLDER, LAPSED_SAME_OR_HIGHER = "granted", "upgraded", "lapsed_holder", "lapsed_held"


def card_of(member_id: int) -> CardType | None:
    return db.session.scalars(
        select(CardType)
        .join(MemberCard, MemberCard.card_type_id == CardType.id)
        .where(MemberCard.member_id == member_id)
    ).first()


@transactional
def ensure_card_type(code: str, name: str, *, rank: int = 1, discount_percent: int = 100) -> CardType:
    if not code or not name or not 1 <= discount_percent <= 100 or rank < 0:
        raise ValidationFailed("卡类型参数有误", code="invalid_card_type")
    card_type = db.session.scalars(select(CardType).where(CardType.code == code)).first()
    if card_type is None:
        card_type = CardType(code=code, name=name, level_rank=rank, discount_percent=discount_percent)
        db.session.add(card_type)
        db.session.flush()
    return card_type


def get_card_type(card_type_id: int) -> CardType:
    card_type = db.session.get(CardType, card_type_id)
    if card_type is None:
        raise NotFound("卡类型不存在", code="card_type_not_found")
    return card_type


@transactional
def grant_card(member_id: int, card_type_id: int, *, only_non_members: bool, source: str, reference: str) -> str:
    """Give the member this card, in the caller's transaction. Returns what happened (see the constants)."""
    card_type = get_card_type(card_type_id)
    held = db.session.execute(
        select(MemberCard.id, CardType.level_rank)
        .join(CardType, CardType.id == MemberCard.card_type_id)
        .where(MemberCard.member_id == member_id)
        .with_for_update()
    ).first()
    if held is None:
        try:
            with db.session.begin_nested():  # a concurrent first grant wins; this one then sees its card
                db.session.add(
                    MemberCard(
                        member_id=member_id,
                        card_type_id=card_type_id,
                        source=source[:32],
                        reference=reference,
                        granted_at=utcnow(),
                    )
                )
            return GRANTED
        except IntegrityError:
            return LAPSED_HOLDER if only_non_members else LAPSED_SAME_OR_HIGHER
    if only_non_members:
        return LAPSED_HOLDER
    if held.level_rank >= card_type.level_rank:
        return LAPSED_SAME_OR_HIGHER
    db.session.execute(
        update(MemberCard)
        .where(MemberCard.id == held.id)
        .values(card_type_id=card_type_id, source=source[:32], reference=reference, granted_at=utcnow())
    )
    return UPGRADED
