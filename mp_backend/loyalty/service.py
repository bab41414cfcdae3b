"""Points rules: earning, redemption at checkout, exchange into bonus balance, manual adjustments,
taking back a refunded payment's points, and the daily expiry job.

Every change of points goes through ``ledger.points`` (lots, append-only entries, idempotency keys,
the member's wallet lock); this module decides how many and under which key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..errors import ValidationFailed
from ..extensions import db
from ..ledger import points
from ..ledger import service as ledger
from ..models_base import utcnow
from ..transaction import transactional
from .models import EarnRule, ExpiryProgress, PointsAdjustment, PointsSettings

SETTINGS_FIELDS = (
    "redeem_points_per_yuan",
    "redeem_max_percent",
    "exchange_points_per_yuan",
    "member_day",
    "member_day_multiplier_percent",
    "birthday_points",
)


def settings() -> PointsSettings:
    """The merchant's settings (defaults until the merchant saves some)."""
    found = db.session.get(PointsSettings, 1)
    return found or PointsSettings(
        id=1,
        redeem_points_per_yuan=100,
        redeem_max_percent=50,
        exchange_points_per_yuan=100,
        member_day=None,
        member_day_multiplier_percent=200,
        birthday_points=0,
    )


@transactional
def update_settings(staff_id: int, **values: Any) -> PointsSettings:
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_rules", None)
    row = db.session.get(PointsSettings, 1, with_for_update=True)
    if row is None:
        row = settings()
        db.session.add(row)
    for name in SETTINGS_FIELDS:
        if name in values:
            setattr(row, name, values[name])
    row.updated_at = utcnow()
    _check_settings(row)
    db.session.flush()
    audit(
        staff_id, "points_settings", "points_settings:1", ", ".join(sorted(k for k in values if k in SETTINGS_FIELDS))
    )
    return row


def _check_settings(row: PointsSettings) -> None:
    if not 1 <= row.redeem_points_per_yuan <= 100_000 or not 1 <= row.exchange_points_per_yuan <= 100_000:
        raise ValidationFailed("兑换比例必须是 1-100000 积分/元", code="invalid_points_settings")
    if not 0 <= row.redeem_max_percent <= 100:
        raise ValidationFailed("抵扣上限必须在 0-100% 之间", code="invalid_points_settings")
    if row.member_day is not None and not 1 <= row.member_day <= 28:
        raise ValidationFailed("会员日必须是每月 1-28 日", code="invalid_points_settings")
    if not 100 <= row.member_day_multiplier_percent <= 1000:
        raise ValidationFailed("会员日倍率必须在 100-1000% 之间", code="invalid_points_settings")
    if not 0 <= (row.birthday_points or 0) <= 100_000:
        raise ValidationFailed("生日积分必须在 0-100000 之间", code="invalid_points_settings")


# ---------------------------------------------------------------------------------------------------
# Earning


def list_earn_rules() -> list[EarnRule]:
    return list(db.session.scalars(select(EarnRule).order_by(EarnRule.id)))


@transactional
def create_earn_rule(staff_id: int, *, trigger: str, points_per_yuan: int, store_id: int | None = None) -> EarnRule:
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_rules", None)
    if trigger not in ("recharge", "spend") or not isinstance(points_per_yuan, int) or not 0 <= points_per_yuan <= 1000:
        raise ValidationFailed("积分规则无效：trigger 为 recharge 或 spend，每元 0-1000 积分", code="invalid_earn_rule")
    for old in db.session.scalars(
        select(EarnRule).where(
            EarnRule.trigger == trigger,
            EarnRule.store_id.is_(store_id) if store_id is None else EarnRule.store_id == store_id,
            EarnRule.active.is_(True),
        )
    ):
        old.active = False  # one active rule per trigger and store: the new one replaces it
    rule = EarnRule(
        trigger=trigger, store_id=store_id, points_per_yuan=points_per_yuan, active=True, created_at=utcnow()
    )
    db.session.add(rule)
    db.session.flush()
    audit(staff_id, "earn_rule_create", f"earn_rule:{rule.id}", f"{trigger} {points_per_yuan}/yuan store={store_id}")
    return rule


def points_for(member_id: int, amount_fen: int, *, trigger: str, store_id: int | None, at: datetime) -> int:
    """How many points ``amount_fen`` earns: the store's rule (else the merchant's), the level's
    multiplier, the member day. Whole points, rounded down."""
    from ..members.cards import card_of

    rules = [r for r in list_earn_rules() if r.active and r.trigger == trigger]
    rule = next((r for r in rules if store_id is not None and r.store_id == store_id), None) or next(
        (r for r in rules if r.store_id is None), None
    )
    if rule is None or amount_fen <= 0:
        return 0
    card_type = card_of(member_id)
    multiplier = card_type.points_multiplier_percent if card_type is not None else 100
    config = settings()
    if config.member_day is not None and points.local_date(at).day == config.member_day:
        multiplier = multiplier * config.member_day_multiplier_percent // 100
    return amount_fen * rule.points_per_yuan * multiplier // (100 * 100)


def earn_key(payment_key: str) -> str:
    return f"earn:{payment_key}"[:112]


@transactional
def earn_for_payment(
    member_id: int,
    amount_fen: int,
    *,
    payment_key: str,
    trigger: str = "spend",
    store_id: int | None = None,
    reference: str | None = None,
) -> int:
    """Give the points a payment or recharge earns, in the caller's transaction (call it from the
    payment's own service call). ``payment_key`` is the payment's idempotency key: the points are
    given once, and ``take_back_for_refund`` finds them by it. Returns the points given."""
    earned = points_for(member_id, amount_fen, trigger=trigger, store_id=store_id, at=utcnow())
    if earned <= 0:
        return 0
    points.award_points(member_id, earned, key=earn_key(payment_key), source=trigger, reference=reference)
    return earned


@transactional
def take_back_for_refund(payment_key: str, *, refund_key: str, refund_fen: int, payment_fen: int) -> int:
    """A refund takes back the points its payment earned, in proportion (the refunds of one payment
    together never take back more than it earned). Returns the points taken back."""
    if not isinstance(refund_fen, int) or not isinstance(payment_fen, int) or not 0 < refund_fen <= payment_fen:
        raise ValidationFailed("退款金额无效", code="invalid_amount")
    award = db.session.execute(
        select(points.entry_t).where(points.entry_t.c.idempotency_key == earn_key(payment_key))
    ).first()
    if award is None:
        return 0
    points.lock_member(award.member_id)
    taken_before = -int(
        db.session.execute(
            select(db.func.coalesce(db.func.sum(points.entry_t.c.delta), 0)).where(
                points.entry_t.c.kind == "reversal", points.entry_t.c.reference == f"earn:{award.id}"
            )
        ).scalar_one()
    )
    due = (
        min(int(award.delta), -(-int(award.delta) * refund_fen // payment_fen))
        if refund_fen < payment_fen
        else int(award.delta)
    )
    due = min(due, int(award.delta) - taken_before)
    if due <= 0:
        return 0
    result = points.take_back(
        award.member_id,
        due,
        key=f"refund-points:{refund_key}"[:112],
        reference=f"earn:{award.id}",
        from_lot=award.lot_id,
    )
    return result.points


# ---------------------------------------------------------------------------------------------------
# Redemption at checkout, exchange into bonus balance, manual adjustments


@dataclass(frozen=True)
class Redemption:
    points: int
    deduct_fen: int
    balance_after: int
    replayed: bool


def _points_to_fen(points_count: int, per_yuan: int) -> int:
    if points_count * 100 % per_yuan:
        raise ValidationFailed(f"积分须按 {per_yuan} 积分 = 1 元换算为整分", code="invalid_points")
    return points_count * 100 // per_yuan


def max_redeemable(member_id: int, order_fen: int) -> dict[str, int]:
    """What the till can offer: at most the merchant's share of the order, at most what the member has."""
    config = settings()
    cap_fen = order_fen * config.redeem_max_percent // 100
    have = points.balance(member_id)
    max_points = min(have, cap_fen * config.redeem_points_per_yuan // 100)
    return {"points": max_points, "deduct_fen": max_points * 100 // config.redeem_points_per_yuan, "balance": have}


@transactional
def redeem_for_order(
    member_id: int, points_count: int, *, order_fen: int, key: str, reference: str | None = None
) -> Redemption:
    """Deduct points from an order (called by the payments code inside its transaction): the points
    are spent at the merchant's rate, never more than the merchant's share of the order."""
    if not isinstance(order_fen, int) or isinstance(order_fen, bool) or order_fen <= 0:
        raise ValidationFailed("订单金额必须是正整数（分）", code="invalid_amount")
    if not isinstance(points_count, int) or isinstance(points_count, bool) or points_count <= 0:
        raise ValidationFailed("积分必须是正整数", code="invalid_points")
    config = settings()
    deduct_fen = _points_to_fen(points_count, config.redeem_points_per_yuan)
    if deduct_fen > order_fen * config.redeem_max_percent // 100:
        raise ValidationFailed(
            f"积分最多抵扣订单金额的 {config.redeem_max_percent}%", code="points_over_order_limit", status=409
        )
    result = points.spend_points(member_id, points_count, key=f"redeem:{key}"[:112], reference=reference)
    return Redemption(points_count, deduct_fen, result.balance_after, result.replayed)


@dataclass(frozen=True)
class Exchange:
    points: int
    bonus_fen: int
    points_balance: int
    posting: ledger.Posting


@transactional
def exchange(member_id: int, points_count: int, *, key: str) -> Exchange:
    """Points into bonus balance at the merchant's rate, in one transaction: the points entry and the
    ledger credit (bonus bucket, keyed from the points entry's key) commit together or not at all."""
    if not isinstance(points_count, int) or isinstance(points_count, bool) or points_count <= 0:
        raise ValidationFailed("兑换积分必须是正整数", code="invalid_points")
    bonus_fen = _points_to_fen(points_count, settings().exchange_points_per_yuan)
    points_key = f"exchange:{key}"[:100]
    spent = points.spend_points(member_id, points_count, key=points_key, reference="exchange")
    posting = ledger.credit(
        member_id,
        bonus_fen,
        key=f"{points_key}:bonus",
        operator=f"member:{member_id}",
        bucket="bonus",
        reference=f"points:{spent.entry_id}",
        note="积分兑换",
    )
    return Exchange(points_count, bonus_fen, spent.balance_after, posting)


@transactional
def adjust(member_id: int, delta: int, *, staff_id: int, reason: str, request_id: str) -> points.PointsResult:
    """A manual change of points (positive: a new lot; negative: spent earliest-first), with reason,
    operator and audit row. ``request_id`` makes a repeated request a replay."""
    from ..org.service import audit, require_permission

    require_permission(staff_id, "manage_members", None)
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0 or abs(delta) > points.MAX_POINTS:
        raise ValidationFailed("调整积分必须是非零整数", code="invalid_points")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("请填写调整原因", code="reason_required")
    key = f"adjust:{request_id}"[:100]
    if delta > 0:
        after = points.award_points(member_id, delta, key=key, source="adjust", reference=f"staff:{staff_id}")
        result = points.PointsResult(delta, after, 0)
    else:
        result = points.spend_points(member_id, -delta, key=key, reference=f"adjust:staff:{staff_id}")
    if db.session.scalars(select(PointsAdjustment.id).where(PointsAdjustment.idempotency_key == key)).first() is None:
        db.session.add(
            PointsAdjustment(
                member_id=member_id,
                delta=delta,
                reason=reason.strip()[:255],
                staff_id=staff_id,
                idempotency_key=key,
                created_at=utcnow(),
            )
        )
        audit(staff_id, "points_adjust", f"member:{member_id}", f"{delta:+d}: {reason.strip()}")
    return result


# ---------------------------------------------------------------------------------------------------
# Expiry


@transactional
def _expire_next(now: datetime, limit: int) -> tuple[int, int]:
    progress = db.session.get(ExpiryProgress, 1, with_for_update=True)
    if progress is None:
        progress = ExpiryProgress(id=1, expires_at=None, lot_id=0, updated_at=now)
        db.session.add(progress)
        db.session.flush()
    cursor = points.ExpiryCursor(progress.expires_at, progress.lot_id)
    seen, expired, after = points.expire_batch(now, cursor, limit)
    progress.expires_at, progress.lot_id, progress.updated_at = after.expires_at, after.lot_id, now
    return seen, expired


def expire_due(*, now: datetime | None = None, batch_size: int = 1000, max_batches: int | None = None) -> int:
    """Expire every lot that has expired by ``now``, ``batch_size`` lots per transaction, resuming
    where the last run (or a killed one) stopped. Returns how many lots were expired."""
    now = now or utcnow()
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        seen, expired = _expire_next(now, batch_size)
        total += expired
        batches += 1
        if seen < batch_size:
            break
    return total


def my_points(member_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """What the member centre shows: the balance, the lots earliest expiry first, what expires soon."""
    from datetime import timedelta

    now = now or utcnow()
    lots = points.lots_of(member_id, at=now)
    soon = now + timedelta(days=30)
    return {
        "balance": sum(int(lot.remaining) for lot in lots),
        "expiring_soon": sum(int(lot.remaining) for lot in lots if lot.expires_at <= soon),
        "items": [
            {
                "id": lot.id,
                "amount": lot.amount,
                "remaining": lot.remaining,
                "earned_at": lot.earned_at,
                "expires_at": lot.expires_at,
                "last_valid_day": points.last_valid_day(lot.expires_at),
                "source": lot.source,
            }
            for lot in lots
        ],
        "exchange_points_per_yuan": settings().exchange_points_per_yuan,
    }
