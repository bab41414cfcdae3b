"""Level rules: when a member moves up or down between card types, and the nightly re-evaluation.

A rule reads one figure of the member's over a trailing period (``recharge``: principal recharged;
``spend``: paid from the balance, less refunds; ``points``: points earned) and compares it with a
threshold. An **up** rule moves a holder of ``from`` (or a member without a card) to a higher card
type when the figure reaches the threshold; a **down** rule moves a holder of ``from`` to a lower one
when the figure falls below it (the threshold is what it takes to keep the level).

Rules that would move a member back and forth are refused as bad input: an up rule must lead to a
higher rank and a down rule to a lower one, and a down rule out of a level may not ask more to stay
than an up rule into it asks to arrive by the same figure and period (a member who has just arrived
would be sent back the same night).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..ledger.models import LedgerEntry
from ..models_base import created_at_column, utcnow
from ..transaction import transactional
from .cards import CardType, LevelChange, MemberCard, get_card_type, record_level_change

METRICS = ("recharge", "spend", "points")
DIRECTIONS = ("up", "down")


class LevelRule(db.Model):  # type: ignore[name-defined]
    __tablename__ = "level_rule"
    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(4))
    from_card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"))  # None: no card yet
    to_card_type_id: Mapped[int | None] = mapped_column(ForeignKey("card_type.id"))  # None: back to no card
    metric: Mapped[str] = mapped_column(String(10))
    threshold: Mapped[int] = mapped_column()  # fen for recharge/spend, points for points
    period_days: Mapped[int] = mapped_column()
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("direction IN ('up', 'down')", name="direction_known"),
        CheckConstraint("metric IN ('recharge', 'spend', 'points')", name="metric_known"),
        CheckConstraint("threshold >= 0", name="threshold_non_negative"),
        CheckConstraint("period_days BETWEEN 1 AND 3660", name="period_days_range"),
    )


def _rank(card_type_id: int | None) -> int:
    return -1 if card_type_id is None else get_card_type(card_type_id).level_rank


def check_rules() -> None:
    """Refuse (ValidationFailed, ``level_rule_loop``) a set of active rules that could loop."""
    rules = list(db.session.scalars(select(LevelRule).where(LevelRule.active.is_(True))))
    for rule in rules:
        if rule.from_card_type_id == rule.to_card_type_id:
            raise ValidationFailed("规则的起止等级相同", code="level_rule_loop")
        higher = _rank(rule.to_card_type_id) > _rank(rule.from_card_type_id)
        if higher != (rule.direction == "up"):
            raise ValidationFailed(
                "升级规则必须升到更高等级，降级规则必须降到更低等级（否则会在等级间来回变动）", code="level_rule_loop"
            )
    for down in (r for r in rules if r.direction == "down"):
        for up in (r for r in rules if r.direction == "up"):
            same_figure = up.metric == down.metric and up.period_days == down.period_days
            if up.to_card_type_id == down.from_card_type_id and same_figure and down.threshold > up.threshold:
                raise ValidationFailed(
                    "保级门槛高于升级门槛：会员升级当晚就会被降级，规则会在等级间循环", code="level_rule_loop"
                )


def list_rules() -> list[LevelRule]:
    return list(db.session.scalars(select(LevelRule).order_by(LevelRule.id)))


@transactional
def create_rule(
    staff_id: int,
    *,
    direction: str,
    from_card_type_id: int | None,
    to_card_type_id: int | None,
    metric: str,
    threshold: int,
    period_days: int,
) -> LevelRule:
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_rules", None)
    if direction not in DIRECTIONS or metric not in METRICS:
        raise ValidationFailed("规则方向或指标无效", code="invalid_level_rule")
    if not isinstance(threshold, int) or threshold < 0 or not 1 <= period_days <= 3660:
        raise ValidationFailed("门槛必须是非负整数，周期 1-3660 天", code="invalid_level_rule")
    for card_type_id in (from_card_type_id, to_card_type_id):
        if card_type_id is not None:
            get_card_type(card_type_id)
    rule = LevelRule(
        direction=direction,
        from_card_type_id=from_card_type_id,
        to_card_type_id=to_card_type_id,
        metric=metric,
        threshold=threshold,
        period_days=period_days,
        active=True,
        created_at=utcnow(),
    )
    db.session.add(rule)
    db.session.flush()
    check_rules()  # raises: the whole call rolls back, the rule is not kept
    audit(staff_id, "level_rule_create", f"level_rule:{rule.id}", f"{direction} {metric} >= {threshold}")
    return rule


@transactional
def deactivate_rule(staff_id: int, rule_id: int) -> LevelRule:
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_rules", None)
    rule = db.session.get(LevelRule, rule_id)
    if rule is None:
        raise NotFound("等级规则不存在", code="level_rule_not_found")
    rule.active = False
    audit(staff_id, "level_rule_deactivate", f"level_rule:{rule_id}")
    return rule


def figure(member_id: int, metric: str, since: datetime) -> int:
    """The member's recharge, spend or points earned since ``since``."""
    if metric == "points":
        from ..ledger.points import entry_t

        return int(
            db.session.execute(
                select(func.coalesce(func.sum(entry_t.c.delta), 0)).where(
                    entry_t.c.member_id == member_id, entry_t.c.kind == "award", entry_t.c.created_at >= since
                )
            ).scalar_one()
        )
    e = LedgerEntry.__table__.c
    if metric == "recharge":
        kinds, column, sign = ("credit",), e.principal_delta_fen, 1
    else:  # spend: what payments took, less what refunds gave back
        kinds, column, sign = ("debit", "capture", "refund"), e.amount_fen, 1
    rows = db.session.execute(
        select(e.kind, func.coalesce(func.sum(column), 0))
        .where(e.member_id == member_id, e.kind.in_(kinds), e.created_at >= since)
        .group_by(e.kind)
    ).all()
    total = 0
    for kind, amount in rows:
        total += -int(amount) if kind == "refund" else int(amount)
    return sign * total


@transactional
def evaluate(member_id: int, *, now: datetime | None = None) -> LevelChange | None:
    """Apply at most one rule to the member (a down rule of the current level first, then the highest
    up rule that is met); record the change with its reason. Returns the change, or None."""
    now = now or utcnow()
    held = db.session.scalars(select(MemberCard).where(MemberCard.member_id == member_id).with_for_update()).first()
    current = held.card_type_id if held is not None else None
    rules = [r for r in list_rules() if r.active and r.from_card_type_id == current]
    chosen = None
    for rule in (r for r in rules if r.direction == "down"):
        value = figure(member_id, rule.metric, now - timedelta(days=rule.period_days))
        if value < rule.threshold:
            chosen, why = rule, f"降级：近 {rule.period_days} 天{_metric_words(rule.metric)} {value} < {rule.threshold}"
            break
    if chosen is None:
        ups = sorted((r for r in rules if r.direction == "up"), key=lambda r: -_rank(r.to_card_type_id))
        for rule in ups:
            value = figure(member_id, rule.metric, now - timedelta(days=rule.period_days))
            if value >= rule.threshold:
                chosen, why = (
                    rule,
                    f"升级：近 {rule.period_days} 天{_metric_words(rule.metric)} {value} ≥ {rule.threshold}",
                )
                break
    if chosen is None:
        return None
    target = chosen.to_card_type_id
    if held is None:
        db.session.add(
            MemberCard(member_id=member_id, card_type_id=target, source="level_rule", reference=f"rule:{chosen.id}")
        )
    elif target is None:
        db.session.delete(held)
    else:
        held.card_type_id, held.source, held.reference = target, "level_rule", f"rule:{chosen.id}"
    record_level_change(member_id, current, target, reason=why, operator="nightly", rule_id=chosen.id)
    db.session.flush()
    return db.session.scalars(
        select(LevelChange).where(LevelChange.member_id == member_id).order_by(LevelChange.id.desc())
    ).first()


def _metric_words(metric: str) -> str:
    return {"recharge": "充值（分）", "spend": "消费（分）", "points": "获得积分"}[metric]


def evaluate_all(*, batch_size: int = 500, now: datetime | None = None) -> int:
    """The nightly job: every member, each in its own short transaction. Returns how many changed."""
    from .models import Member

    changed, last_id = 0, 0
    while True:
        ids = list(
            db.session.scalars(select(Member.id).where(Member.id > last_id).order_by(Member.id).limit(batch_size))
        )
        db.session.rollback()
        if not ids:
            return changed
        for member_id in ids:
            if evaluate(member_id, now=now) is not None:
                changed += 1
        last_id = ids[-1]


def history(member_id: int) -> list[LevelChange]:
    return list(
        db.session.scalars(select(LevelChange).where(LevelChange.member_id == member_id).order_by(LevelChange.id))
    )


__all__ = ["LevelRule", "CardType", "check_rules", "create_rule", "evaluate", "evaluate_all"]
