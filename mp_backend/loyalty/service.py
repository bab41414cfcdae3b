"""Points rules: earning, redemption at checkout, exchange into bonus balance, manual adjustments,
taking back a refunded payment's points, and the daily expiry job.

Every change of points goes through ``ledger.points`` (lots, append-only entries, idempotency keys,
the member's wallet lock); this module decides how many and under which key.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import hotpath
from ..errors import IdempotencyConflict, NotFound, ValidationFailed
from ..extensions import db
from ..ledger import points
from ..ledger import service as ledger
from ..models_base import utcnow
from ..transaction import RetryTransaction, transactional
from .models import EarnRule, ExpiryProgress, PointsAdjustment, PointsRefund, PointsSettings

SETTINGS_FIELDS = (
    "redeem_points_per_yuan",
    "redeem_max_percent",
    "exchange_points_per_yuan",
    "member_day",
    "member_day_multiplier_percent",
    "birthday_points",
    "pending_days",
    "referral_points",
    "referral_monthly_cap",
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
        pending_days=0,
        referral_points=0,
        referral_monthly_cap=10,
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
    if not 0 <= row.pending_days <= 90:
        raise ValidationFailed("消费积分待生效天数必须在 0-90 之间", code="invalid_points_settings")
    if not 0 <= row.referral_points <= 1_000_000 or not 0 <= row.referral_monthly_cap <= 10_000:
        raise ValidationFailed("邀请奖励积分 0-1000000，每月上限 0-10000", code="invalid_points_settings")


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
    if store_id is not None:
        from ..org.models import Store

        if isinstance(store_id, bool) or not isinstance(store_id, int) or db.session.get(Store, store_id) is None:
            raise NotFound("门店不存在", code="store_not_found")
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
    forget_earn_rules()  # other processes (and a thread here that reads them before this commits): in time
    audit(staff_id, "earn_rule_create", f"earn_rule:{rule.id}", f"{trigger} {points_per_yuan}/yuan store={store_id}")
    return rule


_ACTIVE_RULES = hotpath.Sql(
    "SELECT earned_on, store_id, points_per_yuan FROM points_earn_rule WHERE active = 1 ORDER BY id"
)
_RULES_CACHE = "earn_rules"


def earn_rule_cache_seconds() -> float:
    """How long a process may keep its copy of the active earning rules (``EARN_RULE_CACHE_SECONDS``,
    default 5): a rule the merchant creates or replaces applies to every payment within that time (at
    once in the process that saved it)."""
    value = current_app.config.get("EARN_RULE_CACHE_SECONDS")
    if value is None:
        value = os.environ.get("EARN_RULE_CACHE_SECONDS") or 5
    return max(0.0, float(value))


def _earn_rate(trigger: str, store_id: int | None) -> int | None:
    """Points per yuan of the rule for ``trigger`` at the store (its own, else the merchant-wide one), None
    without one. Every payment and recharge asks: the rules (a handful of rows) are read once per
    ``EARN_RULE_CACHE_SECONDS`` per process rather than once per payment."""
    now = time.monotonic()
    cached = current_app.extensions.get(_RULES_CACHE)
    if cached is None or cached[0] <= now:
        rates: dict[tuple[str, int | None], int] = {}
        for earned_on, rule_store, per_yuan in _ACTIVE_RULES.run(hotpath.cursor()).fetchall():
            rates[(earned_on, rule_store)] = int(per_yuan)  # by id: the newest active rule wins
        cached = (now + earn_rule_cache_seconds(), rates)
        current_app.extensions[_RULES_CACHE] = cached
    rates = cached[1]
    own = rates.get((trigger, store_id)) if store_id is not None else None
    return own if own is not None else rates.get((trigger, None))


def forget_earn_rules() -> None:
    """Drop this process's copy of the earning rules (they changed here)."""
    current_app.extensions.pop(_RULES_CACHE, None)


def points_for(member_id: int, amount_fen: int, *, trigger: str, store_id: int | None, at: datetime) -> int:
    """How many points ``amount_fen`` earns: the store's rule (else the merchant's), the level's
    multiplier, the member day. Whole points, rounded down."""
    from ..members.cards import card_of

    if amount_fen <= 0:
        return 0
    points_per_yuan = _earn_rate(trigger, store_id)
    if points_per_yuan is None:
        return 0
    card_type = card_of(member_id)
    multiplier = card_type.points_multiplier_percent if card_type is not None else 100
    config = settings()
    if config.member_day is not None and points.local_date(at).day == config.member_day:
        multiplier = multiplier * config.member_day_multiplier_percent // 100
    return amount_fen * points_per_yuan * multiplier // (100 * 100)


def earn_key(payment_key: str) -> str:
    return points.short_key(f"earn:{payment_key}")


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
    payment's own service call). ``payment_key`` is the payment's own key (``payment:<id>``,
    ``till:<charge id>``, ``recharge:<out_trade_no>``, ``offline:<id>``; its ledger keys are
    ``<payment key>:<part>``): the points are given once, and ``refund_points`` finds them by it.
    Points a purchase earns (``spend``) stay pending for the merchant's ``pending_days``. Returns the
    points given."""
    now = utcnow()
    earned = points_for(member_id, amount_fen, trigger=trigger, store_id=store_id, at=now)
    if earned <= 0:
        return 0
    days = settings().pending_days if trigger == "spend" else 0
    points.award_points(
        member_id,
        earned,
        key=earn_key(payment_key),
        source=trigger,
        reference=reference,
        available_at=now + timedelta(days=days) if days else None,
    )
    return earned


# Whether the member's invitation waits for a first payment: a column a payment's own first statement can
# carry (``{member}``: the member id column there), so that ``on_spend`` need not ask (``referral_bound``).
REFERRAL_BOUND_COLUMN = "(SELECT COUNT(*) FROM referral r WHERE r.invitee_id = {member} AND r.status = 'bound')"


def on_spend(
    member_id: int,
    amount_fen: int,
    *,
    payment_key: str,
    store_id: int | None,
    reference: str | None,
    referral_bound: bool | None = None,
) -> int:
    """Everything a member's payment does to points, inside the payment's transaction: the points it
    earns (pending per the merchant's setting) and, for a first payment, the inviter's reward.
    ``referral_bound``: what ``REFERRAL_BOUND_COLUMN`` said in this transaction (None: ask)."""
    from . import referrals

    earned = earn_for_payment(
        member_id, amount_fen, payment_key=payment_key, trigger="spend", store_id=store_id, reference=reference
    )
    if referral_bound is not False:
        referrals.reward_on_payment(member_id)
    return earned


def on_recharge(
    member_id: int, amount_fen: int, *, payment_key: str, store_id: int | None, reference: str | None
) -> int:
    """The points a recharge earns by the earning rules (besides a recharge rule's own reward points)."""
    return earn_for_payment(
        member_id, amount_fen, payment_key=payment_key, trigger="recharge", store_id=store_id, reference=reference
    )


@dataclass(frozen=True)
class RefundedPoints:
    due: int  # earned points due back for this refund
    voided: int  # of which cancelled while still pending
    taken: int  # of which taken back from usable points
    shortfall: int  # of which the member no longer had (spent or expired): recorded, not taken
    restored: int  # redeemed points given back
    replayed: bool = False


def _pro_rata(points_count: int, refunded_fen: int, payment_fen: int, *, up: bool) -> int:
    if refunded_fen >= payment_fen:
        return points_count
    share = points_count * refunded_fen
    return -(-share // payment_fen) if up else share // payment_fen


@transactional
def refund_points(
    member_id: int, payment_key: str, *, refund_key: str, refund_fen: int, payment_fen: int
) -> RefundedPoints:
    """What a refund of ``refund_fen`` (of a payment of ``payment_fen``) does to points, once per
    ``refund_key``: the points the payment earned (``earn:<payment key>``, and a recharge rule's
    ``<payment key>:points``) come back pro rata on the money refunded so far, rounded up (voided while
    pending, else taken back, never below zero: what the member no longer has is recorded as
    ``shortfall``); points redeemed at checkout (``redeem:<payment key>``) are given back pro rata,
    rounded down (the last refund gives back the rest). One ``points_refund`` row records it."""
    if type(refund_fen) is not int or type(payment_fen) is not int or not 0 < refund_fen <= payment_fen:
        raise ValidationFailed("退款金额无效", code="invalid_amount")
    entry = points.entry_t
    awards = db.session.execute(
        select(entry.c.id, entry.c.delta, entry.c.lot_id).where(
            entry.c.idempotency_key.in_([earn_key(payment_key), f"{payment_key}:points"]),
            entry.c.member_id == member_id,
            entry.c.kind.in_(("award", "pending")),
        )
    ).all()
    redeem_key = redemption_key(payment_key)
    redeemed = points.moved_by(redeem_key)
    if not awards and not redeemed:  # a payment that earned and redeemed nothing: nothing to record
        return RefundedPoints(0, 0, 0, 0, 0)
    points.lock_member(member_id)
    done = db.session.scalars(
        select(PointsRefund).where(PointsRefund.payment_key == payment_key, PointsRefund.refund_key == refund_key)
    ).first()
    if done is not None:
        return RefundedPoints(done.due, done.voided, done.taken, done.shortfall, done.restored, replayed=True)
    before = int(
        db.session.scalar(
            select(db.func.coalesce(db.func.sum(PointsRefund.refund_fen), 0)).where(
                PointsRefund.payment_key == payment_key
            )
        )
    )
    after = min(payment_fen, before + refund_fen)
    before = min(before, after)
    due = voided = taken = 0
    for award in sorted(awards, key=lambda a: int(a.id)):
        amount = int(award.delta)
        part = _pro_rata(amount, after, payment_fen, up=True) - _pro_rata(amount, before, payment_fen, up=True)
        if part <= 0:
            continue
        due += part
        key = points.short_key(f"refund-points:{award.id}:{refund_key}")
        gone = points.void_pending(
            int(award.lot_id), part, key=points.short_key(f"void:{key}"), reference=f"earn:{award.id}"
        )
        voided += gone
        if part > gone:
            taken += points.take_back(
                member_id, part - gone, key=key, reference=f"earn:{award.id}", from_lot=int(award.lot_id)
            ).points
    restored = 0
    give = _pro_rata(redeemed, after, payment_fen, up=False) - _pro_rata(redeemed, before, payment_fen, up=False)
    if give > 0:
        restored = points.restore(
            member_id, redeem_key, give, key=points.short_key(f"restore:{payment_key}:{refund_key}", 100)
        )
    row = PointsRefund(
        member_id=member_id,
        payment_key=payment_key,
        refund_key=refund_key,
        refund_fen=after - before,
        payment_fen=payment_fen,
        due=due,
        voided=voided,
        taken=taken,
        shortfall=due - voided - taken,
        restored=restored,
        created_at=utcnow(),
    )
    db.session.add(row)
    db.session.flush()
    return RefundedPoints(due, voided, taken, row.shortfall, restored)


def points_taken_back(payment_key: str) -> int:
    """Points the refunds of a payment took back or voided so far."""
    return int(
        db.session.scalar(
            select(db.func.coalesce(db.func.sum(PointsRefund.voided + PointsRefund.taken), 0)).where(
                PointsRefund.payment_key == payment_key
            )
        )
    )


# ---------------------------------------------------------------------------------------------------
# Redemption at checkout, exchange into bonus balance, manual adjustments


def redemption_key(payment_key: str) -> str:
    return points.short_key(f"redeem:{payment_key}")


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


def redemption_fen(points_count: object, order_fen: object) -> int:
    """What ``points_count`` points take off an order of ``order_fen`` at the merchant's rate; refused
    (``points_over_order_limit``, 409) beyond the merchant's maximum share of the order."""
    if not isinstance(order_fen, int) or isinstance(order_fen, bool) or order_fen <= 0:
        raise ValidationFailed("订单金额必须是正整数（分）", code="invalid_amount")
    if not isinstance(points_count, int) or isinstance(points_count, bool) or not 0 < points_count <= points.MAX_POINTS:
        raise ValidationFailed("积分必须是正整数", code="invalid_points")
    config = settings()
    deduct_fen = _points_to_fen(points_count, config.redeem_points_per_yuan)
    limit_fen = order_fen * config.redeem_max_percent // 100
    if deduct_fen > limit_fen:
        max_points = limit_fen * config.redeem_points_per_yuan // 100
        raise ValidationFailed(
            f"积分最多抵扣订单金额的 {config.redeem_max_percent}%（本单最多 {max_points} 积分）",
            code="points_over_order_limit",
            status=409,
            details={"max_points": max_points, "max_deduct_fen": limit_fen},
        )
    return deduct_fen


@transactional
def redeem_for_order(
    member_id: int, points_count: int, *, order_fen: int, key: str, reference: str | None = None
) -> Redemption:
    """Deduct points from an order (called by the payments code inside its transaction): the points
    are spent at the merchant's rate, never more than the merchant's share of the order."""
    deduct_fen = redemption_fen(points_count, order_fen)
    result = points.spend_points(member_id, points_count, key=redemption_key(key), reference=reference)
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
    points.lock_member(member_id)  # a racing copy of this request waits here, then finds the first
    first = db.session.scalars(select(PointsAdjustment).where(PointsAdjustment.idempotency_key == key)).first()
    if first is not None:
        # The request id names one adjustment of one member: the same again is a replay, anything
        # else reusing it is refused (and learns nothing of the first).
        if (first.member_id, first.delta, first.reason) != (member_id, delta, reason.strip()[:255]):
            raise IdempotencyConflict()
        return points.PointsResult(abs(first.delta), points.balance(member_id), 0, replayed=True)
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
        try:
            db.session.flush()
        except IntegrityError:  # the first run ever, raced by another: its row is there, start again
            raise RetryTransaction() from None
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


def release_pending(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Make every pending lot whose ``available_at`` has come usable, ``batch_size`` per transaction.
    Returns how many lots were released by this call."""
    now = now or utcnow()
    total = 0
    while True:
        released = points.release_due(now, batch_size)
        total += released
        if released < batch_size:
            return total


def my_points(member_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """What the member centre shows: the balance, the lots earliest expiry first, what expires soon."""
    from datetime import timedelta

    now = now or utcnow()
    lots = points.lots_of(member_id, at=now)
    soon = now + timedelta(days=30)
    pending = points.pending_lots(member_id)
    return {
        "balance": sum(int(lot.remaining) for lot in lots),
        "pending": sum(int(lot.remaining) for lot in pending),
        "pending_items": [
            {"id": lot.id, "remaining": lot.remaining, "earned_at": lot.earned_at, "available_at": lot.available_at}
            for lot in pending
        ],
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
