"""Card types and the card a member holds (minimal: issue 14 adds benefits, upgrades and levels).

A member holds at most one card (UNIQUE member_id). A card gift from a recharge is granted once; when
the gift is "only for non-members" it is never granted to someone who already holds a card, and a
member who holds a card of the same or a higher rank keeps it (the gift lapses, and the caller
records why).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column, utcnow
from ..transaction import transactional


class CardType(db.Model):  # type: ignore[name-defined]
    __tablename__ = "card_type"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(ExactString(32), unique=True)
    name: Mapped[str] = mapped_column(String(32))
    level_rank: Mapped[int] = mapped_column(default=1)  # higher is better
    discount_percent: Mapped[int] = mapped_column(default=100)  # 95 = 5 % off
    free_shipping: Mapped[bool] = mapped_column(default=False, server_default=text("0"))
    # 150 = points earned x1.5; an integer percent, never a float
    points_multiplier_percent: Mapped[int] = mapped_column(default=100, server_default="100")
    points_validity_years: Mapped[int] = mapped_column(default=2, server_default="2")
    active: Mapped[bool] = mapped_column(default=True, server_default=text("1"))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("discount_percent BETWEEN 1 AND 100", name="discount_percent_range"),
        CheckConstraint("level_rank >= 0", name="level_rank_non_negative"),
        CheckConstraint("points_multiplier_percent BETWEEN 0 AND 1000", name="points_multiplier_range"),
        CheckConstraint("points_validity_years BETWEEN 1 AND 10", name="points_validity_years_range"),
    )


class MemberCard(db.Model):  # type: ignore[name-defined]
    __tablename__ = "member_card"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), unique=True)
    card_type_id: Mapped[int] = mapped_column(ForeignKey("card_type.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(ExactString(64))
    granted_at: Mapped[datetime] = created_at_column()


class LevelChange(db.Model):  # type: ignore[name-defined]
    """Every change of a member's card type (level), with its reason: a gift, a rule, a person."""

    __tablename__ = "level_change"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    from_card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"))
    to_card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"))
    rule_id: Mapped[int | None] = mapped_column()
    reason: Mapped[str] = mapped_column(String(255))
    operator: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()


class CardEvent(db.Model):  # type: ignore[name-defined]
    """Loss reports, freezes, replacements: what was done to a member's card, why and by whom."""

    __tablename__ = "card_event"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    old_card_no: Mapped[str | None] = mapped_column(String(20))
    new_card_no: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(255))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint(
            "action IN ('report_loss', 'cancel_loss', 'freeze', 'unfreeze', 'replace')", name="action_known"
        ),
    )


def record_level_change(
    member_id: int, old: int | None, new: int | None, *, reason: str, operator: str, rule_id: int | None = None
) -> None:
    db.session.add(
        LevelChange(
            member_id=member_id,
            from_card_type_id=old,
            to_card_type_id=new,
            rule_id=rule_id,
            reason=reason[:255],
            operator=operator[:64],
            created_at=utcnow(),
        )
    )


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
        select(MemberCard.id, MemberCard.card_type_id, CardType.level_rank)
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
            record_level_change(member_id, None, card_type_id, reason=f"{source}: {reference}", operator=source)
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
    record_level_change(member_id, held.card_type_id, card_type_id, reason=f"{source}: {reference}", operator=source)
    return UPGRADED


# ---------------------------------------------------------------------------------------------------
# Card types (the merchant's levels) and card operations, from the console.

VALIDITY_YEARS = (1, 2, 3, 5, 10)
CARD_TYPE_FIELDS = (
    "name",
    "level_rank",
    "discount_percent",
    "free_shipping",
    "points_multiplier_percent",
    "points_validity_years",
    "active",
)


def _check_card_type(values: dict) -> None:
    if "discount_percent" in values and not 1 <= values["discount_percent"] <= 100:
        raise ValidationFailed("折扣必须在 1-100 之间（100 表示不打折）", code="invalid_card_type")
    if "points_multiplier_percent" in values and not 0 <= values["points_multiplier_percent"] <= 1000:
        raise ValidationFailed("积分倍率必须在 0-1000% 之间", code="invalid_card_type")
    if "points_validity_years" in values and values["points_validity_years"] not in VALIDITY_YEARS:
        raise ValidationFailed("积分有效期只能是 1、2、3、5 或 10 年", code="invalid_card_type")
    if "level_rank" in values and not 0 <= values["level_rank"] <= 1000:
        raise ValidationFailed("等级序号必须在 0-1000 之间", code="invalid_card_type")
    if "name" in values and not str(values["name"]).strip():
        raise ValidationFailed("请填写卡类型名称", code="invalid_card_type")


def list_card_types() -> list[CardType]:
    return list(db.session.scalars(select(CardType).order_by(CardType.level_rank, CardType.id)))


@transactional
def create_card_type(staff_id: int, code: str, **values: object) -> CardType:
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_rules", None)
    values = {k: v for k, v in values.items() if k in CARD_TYPE_FIELDS and v is not None}
    _check_card_type(values)
    if db.session.scalars(select(CardType.id).where(CardType.code == code)).first() is not None:
        raise ValidationFailed("卡类型代码已存在", code="card_type_exists", status=409)
    card_type = CardType(code=code, created_at=utcnow(), **values)
    db.session.add(card_type)
    db.session.flush()
    audit(staff_id, "card_type_create", f"card_type:{card_type.id}", code)
    return card_type


@transactional
def update_card_type(staff_id: int, card_type_id: int, **values: object) -> CardType:
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_rules", None)
    card_type = get_card_type(card_type_id)
    values = {k: v for k, v in values.items() if k in CARD_TYPE_FIELDS and v is not None}
    _check_card_type(values)
    for name, value in values.items():
        setattr(card_type, name, value)
    db.session.flush()
    if "level_rank" in values:  # a new order of levels may turn the rules into a loop
        from .levels import check_rules

        check_rules()
    audit(staff_id, "card_type_update", f"card_type:{card_type_id}", ", ".join(sorted(values)))
    return card_type


CARD_ACTIONS = {
    # action: (statuses it applies to, status after)
    "report_loss": (("active", "frozen"), "lost"),
    "cancel_loss": (("lost",), "active"),
    "freeze": (("active",), "frozen"),
    "unfreeze": (("frozen",), "active"),
}


@transactional
def card_action(member_id: int, action: str, *, staff_id: int, reason: str, store_id: int | None = None) -> object:
    """Report a card lost, cancel the report, freeze, unfreeze: through ``members.service.set_status``
    (which also stops the wallet), recorded with reason and operator."""
    from ..errors import Conflict, MemberNotFound
    from . import service as members
    from .models import Member

    if action not in CARD_ACTIONS:
        raise ValidationFailed("未知的会员卡操作", code="invalid_card_action")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("请填写原因", code="reason_required")
    member = db.session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise MemberNotFound()
    allowed, after = CARD_ACTIONS[action]
    if member.status not in allowed:
        raise Conflict(f"会员卡当前状态（{member.status}）不能执行此操作", code="card_status_conflict")
    member = members.set_status(member_id, after, staff_id=staff_id, reason=reason, store_id=store_id)
    db.session.add(
        CardEvent(
            member_id=member_id, action=action, reason=reason.strip()[:255], staff_id=staff_id, created_at=utcnow()
        )
    )
    return member


@transactional
def replace_card(member_id: int, *, staff_id: int, reason: str, store_id: int | None = None) -> object:
    """A new card number for the same member and wallet (after a loss, a worn card); the old number
    stops working at once. The card becomes active again."""
    from ..errors import MemberNotFound
    from ..ledger import service as ledger
    from ..org.service import audit, require_permission
    from .models import Member
    from .service import _new_card_no

    require_permission(staff_id, "manage_members", store_id)
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("请填写原因", code="reason_required")
    member = db.session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise MemberNotFound()
    old = member.card_no
    member.card_no = _new_card_no()
    member.status = "active"
    ledger.set_frozen(member_id, False)
    db.session.flush()
    db.session.add(
        CardEvent(
            member_id=member_id,
            action="replace",
            old_card_no=old,
            new_card_no=member.card_no,
            reason=reason.strip()[:255],
            staff_id=staff_id,
            created_at=utcnow(),
        )
    )
    audit(staff_id, "card_replace", f"member:{member_id}", f"{old} -> {member.card_no}: {reason.strip()}")
    from .wechat_card import card_replaced

    card_replaced(member_id)  # a bound WeChat card is sent its values (and the new number) again
    return member


def card_events(member_id: int) -> list[CardEvent]:
    return list(db.session.scalars(select(CardEvent).where(CardEvent.member_id == member_id).order_by(CardEvent.id)))
