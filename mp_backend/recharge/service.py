"""Recharges: rules offered to members, orders paid through WeChat Pay, and what a payment credits.

- ``start_recharge`` checks everything that can be checked before money moves (rule, window, store,
  free amount, card status, principal cap), records a pending order with a snapshot of its rule, and
  asks WeChat Pay for a JSAPI prepay with the appid the member came through.
- ``handle_notification`` verifies WeChat's signature with the order's sign type, checks every field
  against the order, and settles it; ``reconcile_order`` settles the same way from orderquery when
  the notification never came. Both end in ``settle``: one transaction whose first statement is a
  guarded ``UPDATE recharge_order SET status = 'paid' ... WHERE status IN ('pending', 'closed')``.
  Only the call that flips the row credits; every other one (a retry, a concurrent copy in another
  process) finds the order paid with the same transaction id and acknowledges without crediting.
  The ledger's idempotency keys (``recharge:<out_trade_no>:principal`` ...) are the second defence.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import and_, case, func, select, true, update
from sqlalchemy.exc import IntegrityError

from .. import hotpath
from ..errors import AppError, Conflict, Forbidden, MemberFrozen, NotFound, ValidationFailed
from ..extensions import db
from ..hotpath import Sql
from ..ledger import points as points_service
from ..ledger import service as ledger
from ..loyalty import service as loyalty
from ..members import cards
from ..members.models import Member, MemberOpenid
from ..models_base import utcnow
from ..money import yuan
from ..notices import service as notices
from ..org import service as org
from ..org.models import Staff, Store
from ..transaction import transactional
from ..wechat import pay
from . import coupons
from .models import CouponTemplate, RechargeAnomaly, RechargeOrder, RechargeRule, RechargeRuleStore, RechargeSettings

log = logging.getLogger(__name__)

order_t = RechargeOrder.__table__
MAX_SRC_LENGTH = 32
RULE_MANAGERS = ("hq_admin", "region_manager")


def _setting(name: str, default: int | str) -> Any:
    value = current_app.config.get(name) or os.environ.get(name)
    if value in (None, ""):
        return default
    return type(default)(value)


def order_ttl_seconds() -> int:
    return int(_setting("RECHARGE_ORDER_TTL_SECONDS", 15 * 60))


def query_after_seconds() -> int:
    return int(_setting("RECHARGE_QUERY_AFTER_SECONDS", 3 * 60))


def sign_type() -> str:
    value = str(_setting("WECHAT_PAY_SIGN_TYPE", "HMAC-SHA256"))
    return value if value in pay.SIGN_TYPES else "HMAC-SHA256"


# ---------------------------------------------------------------------------------------------------
# Errors with stable codes


class RuleNotFound(NotFound):
    code, message = "rule_not_found", "充值活动不存在"


class RuleArchived(Conflict):
    code, message = "rule_archived", "该充值活动已下架"


class RuleNotStarted(Conflict):
    code, message = "rule_not_started", "该充值活动尚未开始"


class RuleEnded(Conflict):
    code, message = "rule_ended", "该充值活动已结束"


class RuleNotInStore(Conflict):
    code, message = "rule_not_in_store", "该充值活动不适用于当前门店"


class BalanceCapExceeded(Conflict):
    code, message = "balance_cap_exceeded", "充值后本金将超过单卡上限，无法充值"


class FreeAmountDisabled(Conflict):
    code, message = "free_amount_disabled", "暂不支持自定义金额充值，请选择充值活动"


class AmountOutOfRange(ValidationFailed):
    code, message = "amount_out_of_range", "充值金额超出允许范围"


class OrderNotFound(NotFound):
    code, message = "order_not_found", "充值订单不存在"


# ---------------------------------------------------------------------------------------------------
# Rules as members see them


def rule_link(code: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/r/{code}"


def rewards_of(snapshot: dict[str, Any]) -> list[str]:
    """What a rule (or an order's snapshot) gives, in plain words."""
    words = []
    if snapshot.get("bonus_fen"):
        words.append(f"赠送 {yuan(snapshot['bonus_fen'])} 元")
    if snapshot.get("points"):
        words.append(f"赠送 {snapshot['points']} 积分")
    if snapshot.get("coupon_qty") and snapshot.get("coupon_name"):
        words.append(f"赠送 {snapshot['coupon_name']} × {snapshot['coupon_qty']}")
    if snapshot.get("card_name"):
        only = "（仅限新会员）" if snapshot.get("card_only_non_members") else ""
        words.append(f"赠送 {snapshot['card_name']}{only}")
    return words


def snapshot_of(rule: RechargeRule) -> dict[str, Any]:
    template = db.session.get(CouponTemplate, rule.coupon_template_id) if rule.coupon_template_id else None
    card_type = db.session.get(cards.CardType, rule.card_type_id) if rule.card_type_id else None
    return {
        "rule_id": rule.id,
        "code": rule.code,
        "name": rule.name,
        "amount_fen": rule.amount_fen,
        "bonus_fen": rule.bonus_fen,
        "points": rule.points,
        "coupon_template_id": template.id if template else None,
        "coupon_name": coupons.describe(template) if template else None,
        "coupon_qty": rule.coupon_qty if template else 0,
        "card_type_id": card_type.id if card_type else None,
        "card_name": card_type.name if card_type else None,
        "card_only_non_members": bool(rule.card_only_non_members) if card_type else False,
    }


def rule_dict(rule: RechargeRule, *, admin: bool = False) -> dict[str, Any]:
    snap = snapshot_of(rule)
    rewards = rewards_of(snap)
    body: dict[str, Any] = {
        "id": rule.id,
        "code": rule.code,
        "name": rule.name,
        "amount_fen": rule.amount_fen,
        "amount_yuan": yuan(rule.amount_fen),
        "bonus_fen": rule.bonus_fen,
        "points": rule.points,
        "coupon": {"template_id": snap["coupon_template_id"], "name": snap["coupon_name"], "qty": snap["coupon_qty"]}
        if snap["coupon_template_id"]
        else None,
        "card": {
            "card_type_id": snap["card_type_id"],
            "name": snap["card_name"],
            "only_non_members": snap["card_only_non_members"],
        }
        if snap["card_type_id"]
        else None,
        "link": rule_link(rule.code),
        "rewards": rewards,
        "rewards_text": f"充 {yuan(rule.amount_fen)} 元" + ("，" + "，".join(rewards) if rewards else ""),
        "starts_at": rule.starts_at.isoformat() if rule.starts_at else None,
        "ends_at": rule.ends_at.isoformat() if rule.ends_at else None,
        "all_stores": rule.all_stores,
        "store_codes": _rule_store_codes(rule) if not rule.all_stores else [],
        "sort_order": rule.sort_order,
    }
    if admin:
        body["status"] = rule.status
        body["order_count"] = _order_count(rule.id)
    return body


def _rule_store_codes(rule: RechargeRule) -> list[str]:
    return list(
        db.session.scalars(
            select(Store.code)
            .join(RechargeRuleStore, RechargeRuleStore.store_id == Store.id)
            .where(RechargeRuleStore.rule_id == rule.id)
            .order_by(Store.code)
        )
    )


def _order_count(rule_id: int) -> int:
    return int(db.session.scalar(select(func.count()).select_from(order_t).where(order_t.c.rule_id == rule_id)) or 0)


def _in_window(rule: RechargeRule, now: datetime) -> bool:
    return (rule.starts_at is None or rule.starts_at <= now) and (rule.ends_at is None or rule.ends_at > now)


def _offered_at(rule: RechargeRule, store_id: int | None) -> bool:
    if rule.all_stores:
        return True
    if store_id is None:
        return False
    return (
        db.session.get(RechargeRuleStore, {"rule_id": rule.id, "store_id": store_id}) is not None  # type: ignore[arg-type]
    )


def _store_id(store_code: str | None) -> int | None:
    return org.store_by_code(store_code).id if store_code else None


def active_rules(store_code: str | None = None) -> list[RechargeRule]:
    """Rules a member may recharge with now (at this store, when given), in the merchant's order."""
    store_id = _store_id(store_code)
    now = utcnow()
    rules = db.session.scalars(
        select(RechargeRule)
        .where(RechargeRule.status == "active")
        .order_by(RechargeRule.sort_order, RechargeRule.amount_fen, RechargeRule.id)
    )
    return [r for r in rules if _in_window(r, now) and (store_id is None or _offered_at(r, store_id))]


def rule_by_code(code: str) -> RechargeRule:
    rule = db.session.scalars(select(RechargeRule).where(RechargeRule.code == code)).first() if code else None
    if rule is None:
        raise RuleNotFound()
    return rule


def rule_for_page(code: str, store_code: str | None) -> RechargeRule:
    """The rule behind a short link; its store scope is checked when the page names a store."""
    rule = rule_by_code(code)
    if rule.all_stores or store_code:
        check_offerable(rule, _store_id(store_code))
    else:
        check_offerable(rule, None, stores_checked_later=True)
    return rule


def check_offerable(
    rule: RechargeRule, store_id: int | None, now: datetime | None = None, *, stores_checked_later: bool = False
) -> None:
    now = now or utcnow()
    if rule.status != "active":
        raise RuleArchived()
    if rule.starts_at is not None and rule.starts_at > now:
        raise RuleNotStarted()
    if rule.ends_at is not None and rule.ends_at <= now:
        raise RuleEnded()
    if not stores_checked_later and not _offered_at(rule, store_id):
        raise RuleNotInStore()


def settings() -> RechargeSettings:
    merchant = org.get_merchant()
    found = db.session.get(RechargeSettings, merchant.id)
    return found or RechargeSettings(
        merchant_id=merchant.id, free_amount_enabled=False, free_min_fen=1_000, free_max_fen=500_000
    )


# ---------------------------------------------------------------------------------------------------
# Orders: before the payment


def new_out_trade_no() -> str:
    # R + China-time second + 10 random digits: 25 characters, unguessable, sortable by day.
    china = datetime.utcnow() + timedelta(hours=8)  # noqa: DTZ003 (a label, not a stored time)
    return f"R{china:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"


@dataclass(frozen=True)
class Started:
    order: RechargeOrder
    pay_params: dict[str, str]


def start_recharge(
    member_id: int,
    appid: str,
    *,
    rule_id: int | None = None,
    amount_fen: int | None = None,
    store_code: str | None = None,
    src: str | None = None,
    client_ip: str = "",
) -> Started:
    order = _open_order(member_id, appid, rule_id, amount_fen, store_code, src)
    try:
        prepay = pay.unified_order(
            appid=order.appid,
            openid=order.openid,
            out_trade_no=order.out_trade_no,
            total_fee=order.amount_fen,
            body=f"会员充值-{(order.rule_snapshot or {}).get('name') or yuan(order.amount_fen) + '元'}"[:120],
            notify_url=f"{current_app.config['PUBLIC_BASE_URL']}/wechat/pay/notify",
            client_ip=client_ip,
            sign_type=order.sign_type,
            expire_seconds=order_ttl_seconds(),
        )
    except AppError:
        _close_locally(order.id)
        raise
    _set_prepay(order.id, prepay.prepay_id)
    return Started(order, prepay.pay_params)


@transactional
def _open_order(
    member_id: int, appid: str, rule_id: int | None, amount_fen: int | None, store_code: str | None, src: str | None
) -> RechargeOrder:
    if (rule_id is None) == (amount_fen is None):
        raise ValidationFailed("请选择充值活动或填写充值金额（二选一）", code="rule_or_amount_required")
    member = db.session.get(Member, member_id)
    if member is None:
        raise NotFound("会员不存在", code="member_not_found")
    if member.status != "active":
        raise MemberFrozen()
    openid = db.session.scalars(
        select(MemberOpenid.openid).where(MemberOpenid.member_id == member_id, MemberOpenid.appid == appid)
    ).first()
    if not openid:
        raise ValidationFailed("请在微信中打开后再充值", code="wechat_identity_missing")
    store_id = _store_id(store_code)
    now = utcnow()
    rule: RechargeRule | None
    if rule_id is not None:
        rule = db.session.get(RechargeRule, rule_id)
        if rule is None:
            raise RuleNotFound()
        check_offerable(rule, store_id, now)
        amount = rule.amount_fen
    else:
        assert amount_fen is not None
        config = settings()
        if not config.free_amount_enabled:
            raise FreeAmountDisabled()
        if not config.free_min_fen <= amount_fen <= config.free_max_fen:
            raise AmountOutOfRange(
                f"充值金额须在 {yuan(config.free_min_fen)} 至 {yuan(config.free_max_fen)} 元之间",
                details={"min_fen": config.free_min_fen, "max_fen": config.free_max_fen},
            )
        amount = amount_fen
        # A free amount earns rewards only when a rule offered here matches it exactly.
        rule = next((r for r in active_rules() if r.amount_fen == amount and _offered_at(r, store_id)), None)
    cap = org.get_merchant().principal_cap_fen
    principal = ledger.get_balance(member_id).principal_fen
    if principal + amount > cap:
        raise BalanceCapExceeded(
            f"充值后本金将超过单卡上限 {yuan(cap)} 元，当前本金 {yuan(principal)} 元",
            details={"cap_fen": cap, "principal_fen": principal, "max_recharge_fen": max(0, cap - principal)},
        )
    snap = snapshot_of(rule) if rule is not None else None
    order = RechargeOrder(
        out_trade_no=new_out_trade_no(),
        member_id=member_id,
        rule_id=rule.id if rule else None,
        rule_snapshot=snap,
        amount_fen=amount,
        bonus_fen=snap["bonus_fen"] if snap else 0,
        points=snap["points"] if snap else 0,
        coupon_template_id=snap["coupon_template_id"] if snap else None,
        coupon_qty=snap["coupon_qty"] if snap else 0,
        card_type_id=snap["card_type_id"] if snap else None,
        card_only_non_members=snap["card_only_non_members"] if snap else False,
        appid=appid,
        mch_id=current_app.config["WECHAT_PAY_MCH_ID"],
        openid=openid,
        sign_type=sign_type(),
        src=(src or None) and src[:MAX_SRC_LENGTH],
        store_id=store_id,
        status="pending",
        created_at=now,
        expires_at=now + timedelta(seconds=order_ttl_seconds()),
    )
    db.session.add(order)
    db.session.flush()
    return order


@transactional
def _set_prepay(order_id: int, prepay_id: str) -> None:
    db.session.execute(update(order_t).where(order_t.c.id == order_id).values(prepay_id=prepay_id[:64]))


@transactional
def _close_locally(order_id: int) -> bool:
    closed = db.session.execute(
        update(order_t)
        .where(order_t.c.id == order_id, order_t.c.status == "pending")
        .values(status="closed", closed_at=utcnow())
    ).rowcount
    return closed == 1


def get_order(out_trade_no: str, member_id: int | None = None) -> RechargeOrder:
    order = db.session.scalars(select(RechargeOrder).where(RechargeOrder.out_trade_no == out_trade_no)).first()
    if order is None or (member_id is not None and order.member_id != member_id):
        raise OrderNotFound()
    return order


def order_dict(order: RechargeOrder, *, admin: bool = False) -> dict[str, Any]:
    snap = order.rule_snapshot or {}
    body: dict[str, Any] = {
        "out_trade_no": order.out_trade_no,
        "status": order.status,
        "amount_fen": order.amount_fen,
        "bonus_fen": order.bonus_fen,
        "points": order.points,
        "rule_id": order.rule_id,
        "rule_name": snap.get("name"),
        "rewards": rewards_of(snap) if snap else [],
        "coupons_granted": order.coupons_granted,
        "coupons_lapsed": order.coupons_lapsed,
        "card_outcome": order.card_outcome,
        "reward_note": order.reward_note,
        "src": order.src,
        "created_at": order.created_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
    }
    if order.status == "paid" or admin:
        body["balance"] = ledger.get_balance(order.member_id).as_dict()
        body["points_balance"] = points_service.balance(order.member_id)
    if admin:
        body.update(
            id=order.id,
            member_id=order.member_id,
            store_id=order.store_id,
            appid=order.appid,
            transaction_id=order.transaction_id,
            paid_via=order.paid_via,
            closed_at=order.closed_at.isoformat() if order.closed_at else None,
        )
    return body


# ---------------------------------------------------------------------------------------------------
# After the payment: notifications, queries, and the one settle path


@dataclass(frozen=True)
class Outcome:
    acknowledged: bool  # answer WeChat SUCCESS: the order is (or already was) credited
    credited_now: bool = False
    message: str = "OK"


CREDITED = ("paid", "paid_uncredited")  # WeChat's money has arrived: the notification is acknowledged


# What the notification path reads of an order: one row on the driver cursor (``hotpath``), no ORM
# object (the snapshot JSON and the bookkeeping columns are not needed), with the merchant's principal
# cap in the same round trip. The order's amount and rewards never change after it is created, so they
# may be read before the guarded UPDATE that decides who credits.
class SettleRow(NamedTuple):
    """An order as ``settle`` needs it (``_order_row``), plus the merchant's principal cap."""

    id: int
    out_trade_no: str
    member_id: int
    status: str
    transaction_id: str | None
    amount_fen: int
    bonus_fen: int
    points: int
    coupon_template_id: int | None
    coupon_qty: int
    card_type_id: int | None
    card_only_non_members: bool
    appid: str
    mch_id: str
    sign_type: str
    store_id: int | None
    cap_fen: int | None


_SETTLE_COLUMNS = SettleRow._fields[:-1]  # the order's own columns; the cap comes from the merchant
_CAP = "(SELECT principal_cap_fen FROM merchant ORDER BY id LIMIT 1)"
# Everything a notification needs in one round trip: the order, the merchant's cap, and the member's
# wallet, locked (with the order row) for the credit that follows (ledger.prime_locked_wallet).
_ORDER_BY = {
    by: Sql(
        f"SELECT {', '.join('o.' + c for c in _SETTLE_COLUMNS)}, {_CAP}, "
        f"{', '.join('w.' + c for c in ledger.LOCKED_WALLET_COLUMNS)} "
        f"FROM recharge_order o JOIN wallet w ON w.member_id = o.member_id WHERE o.{by} = ? FOR UPDATE"
    )
    for by in ("id", "out_trade_no")
}
_FLIP = Sql(
    "UPDATE recharge_order SET status = ?, transaction_id = ?, paid_at = ?, paid_via = ? WHERE id = ? AND status = ?"
)
_ORDER_STATUS = Sql("SELECT status, transaction_id FROM recharge_order WHERE id = ?")


def _order_row(by: str, key: int | str) -> SettleRow | None:
    """The order by ``id`` or ``out_trade_no``, as the notification path reads it; the order row and its
    member's wallet stay locked until the transaction ends (the flip and the credit come next)."""
    row = _ORDER_BY[by].one(hotpath.cursor(), (key,))
    if row is None:
        return None
    split = len(SettleRow._fields)
    order = SettleRow(*row[:split])
    ledger.prime_locked_wallet(order.member_id, row[split:])
    return order._replace(card_only_non_members=bool(order.card_only_non_members))  # MariaDB gives 0 / 1


def handle_notification(body: bytes, fields: dict[str, str] | None = None) -> Outcome:
    """``fields``: the body already parsed by ``pay.parse_xml`` (the web handler parses it once)."""
    fields = pay.parse_xml(body) if fields is None else fields
    if fields is None:
        log.warning("pay notify: not a WeChat Pay XML document (%d bytes)", len(body or b""))
        return Outcome(False, message="XML格式错误")
    out_trade_no = fields.get("out_trade_no") or ""
    # The read stays in the transaction that settle() continues and commits (one round trip fewer).
    order = _order_row("out_trade_no", out_trade_no[:64])
    signed = (
        pay.signature_ok(fields, order.sign_type)
        if order is not None
        else any(pay.signature_ok(fields, t) for t in pay.SIGN_TYPES)
    )
    if not signed:
        db.session.rollback()
        log.warning("pay notify: bad signature refused (out_trade_no %r)", out_trade_no[:64])
        return Outcome(False, message="签名错误")
    raw = pay.without_sign(fields)
    if order is None:
        record_anomaly("unknown_order", raw, None, "通知的商户订单号不存在")
        return Outcome(False, message="订单不存在")
    problem = _mismatch(order, raw)
    if problem:
        record_anomaly(problem[0], raw, order.id, problem[1])
        return Outcome(False, message=problem[1])
    if order.status in CREDITED and order.transaction_id == raw["transaction_id"]:
        db.session.rollback()
        return Outcome(True)  # WeChat's retry of a settled payment: nothing to write
    return settle(order, raw["transaction_id"], via="notify", raw=raw)


def _mismatch(order: Any, fields: dict[str, str]) -> tuple[str, str] | None:
    if fields.get("return_code") != "SUCCESS":
        return "return_fail", f"return_code={fields.get('return_code')}"
    if fields.get("appid") != order.appid:
        return "appid_mismatch", f"appid {fields.get('appid')!r} 不是下单时的 {order.appid}"
    if fields.get("mch_id") != order.mch_id:
        return "mch_id_mismatch", f"mch_id {fields.get('mch_id')!r} 不是下单时的 {order.mch_id}"
    if fields.get("result_code") != "SUCCESS":
        return "result_fail", f"result_code={fields.get('result_code')} err_code={fields.get('err_code')}"
    if fields.get("total_fee") != str(order.amount_fen):
        return "amount_mismatch", f"total_fee {fields.get('total_fee')!r} 不等于订单金额 {order.amount_fen}"
    if not fields.get("transaction_id"):
        return "transaction_missing", "缺少 transaction_id"
    return None


def settle(order: Any, transaction_id: str, *, via: str, raw: dict[str, str] | None = None) -> Outcome:
    """Mark the order paid with WeChat's transaction id and credit it, once (``order``: ``_order_row``).

    A member whose card was frozen or reported lost after ordering cannot be credited, but WeChat has
    taken the money: the order becomes ``paid_uncredited`` (the transaction id recorded, an anomaly
    ``member_frozen`` for the merchant), WeChat is acknowledged so that it stops retrying, and
    ``credit_held_order`` credits it once the card is active again (the job every minute, or the
    console). Nothing is lost and nothing credits twice: both paths flip the order row first."""
    raw = raw or {"transaction_id": transaction_id, "out_trade_no": order.out_trade_no}
    try:
        credited = _settle(order, transaction_id, via, raw)
    except MemberFrozen as error:
        db.session.rollback()
        return Outcome(True, message=_hold_uncredited(order, transaction_id, via, raw, error.message))
    except AppError as error:
        record_anomaly(error.code, raw, order.id, error.message)
        return Outcome(False, message=error.message)
    except IntegrityError:
        db.session.rollback()
        record_anomaly("transaction_reused", raw, order.id, "交易号已用于其他订单")
        return Outcome(False, message="交易号重复")
    return Outcome(True, credited_now=credited)


def _flip(order: Any, transaction_id: str, via: str, status: str) -> str | None:
    """The guarded UPDATE that decides who settles an order. Returns the status it left (``pending``,
    or ``closed`` when we had closed it and the member paid all the same) for the one call that flips
    it, None for a retry or a concurrent copy; another transaction id for the order is a conflict."""
    tx = hotpath.cursor()
    paid_at = tx.timestamp()
    for before in ("pending", "closed"):
        if _FLIP.run(tx, (status, transaction_id, paid_at, via, order.id, before)).rowcount == 1:
            return before
    row = _ORDER_STATUS.one(tx, (order.id,))
    assert row is not None  # orders are never deleted
    if row[0] in CREDITED and row[1] == transaction_id:
        return None  # already settled: a retry, or a copy that lost the race
    raise Conflict("订单已用另一笔微信交易入账", code="transaction_mismatch")


def _paid_after_close(before: str | None, order: Any, raw: dict[str, str]) -> None:
    if before == "closed":  # we closed it (expired), yet the member paid: the money is theirs
        _anomaly("paid_after_close", raw, order.id, "订单已关闭后收到支付成功通知：已收款，请核对")


@transactional
def _settle(order: Any, transaction_id: str, via: str, raw: dict[str, str]) -> bool:
    before = _flip(order, transaction_id, via, "paid")
    if before is None:
        return False
    _paid_after_close(before, order, raw)
    _credit_order(order, via, raw)
    return True


def _credit_order(order: Any, via: str, raw: dict[str, str]) -> None:
    """Credit principal, bonus, points, coupons and card per the order's snapshot (inside a transaction
    that has just flipped the order). A principal past the merchant's cap is still credited (the money
    is the member's) and recorded for the merchant."""
    no = order.out_trade_no
    common = {"operator": "wechat_pay", "store_id": order.store_id, "reference": no}
    posting = ledger.credit(
        order.member_id, order.amount_fen, key=f"recharge:{no}:principal", note="微信充值", **common
    )
    if order.cap_fen is not None and posting.balance.principal_fen > order.cap_fen:
        _anomaly(
            "balance_cap_exceeded",
            raw,
            order.id,
            f"入账后本金 {yuan(posting.balance.principal_fen)} 元，超过单卡上限 {yuan(order.cap_fen)} 元",
        )
    bonus, rewards = grant_rewards(order, key_prefix=f"recharge:{no}", order_id=order.id, **common)
    loyalty.on_recharge(
        order.member_id, order.amount_fen, payment_key=f"recharge:{no}", store_id=order.store_id, reference=no
    )
    if rewards:
        db.session.execute(update(order_t).where(order_t.c.id == order.id).values(**rewards))
    log.info("recharge %s credited (via %s): %d fen + %d bonus", no, via, order.amount_fen, order.bonus_fen)
    notices.notify_after_commit(bonus or posting, order.amount_fen + order.bonus_fen, "充值")


def grant_rewards(
    reward: Any, *, key_prefix: str, order_id: int | None, operator: str, store_id: int | None, reference: str
) -> tuple[ledger.Posting | None, dict[str, Any]]:
    """Give a rule's bonus, points, coupons and card, in the caller's transaction (``reward``: an order row,
    or any object with its columns ``member_id``, ``bonus_fen``, ``points``, ``coupon_template_id``,
    ``coupon_qty``, ``card_type_id``, ``card_only_non_members``). Returns the bonus posting and the
    outcome columns (coupons_granted, coupons_lapsed, card_outcome, reward_note) to record."""
    common = {"operator": operator, "store_id": store_id, "reference": reference}
    bonus = None
    if reward.bonus_fen:
        bonus = ledger.credit(
            reward.member_id, reward.bonus_fen, key=f"{key_prefix}:bonus", bucket="bonus", note="充值赠送", **common
        )
    if reward.points:
        points_service.award_points(
            reward.member_id, reward.points, key=f"{key_prefix}:points", source="recharge", reference=reference
        )
    rewards: dict[str, Any] = {}
    notes = []
    if reward.coupon_template_id and reward.coupon_qty:
        granted, lapse = coupons.issue_for_order(
            reward.member_id, reward.coupon_template_id, reward.coupon_qty, order_id
        )
        rewards.update(coupons_granted=granted, coupons_lapsed=reward.coupon_qty - granted)
        if lapse:
            notes.append(f"优惠券未发放：{lapse}")
    if reward.card_type_id:
        outcome = cards.grant_card(
            reward.member_id,
            reward.card_type_id,
            only_non_members=reward.card_only_non_members,
            source="recharge",
            reference=reference,
        )
        rewards["card_outcome"] = outcome
        if outcome == cards.LAPSED_HOLDER:
            notes.append("会员卡未赠送：仅限新会员，该会员已持卡")
        elif outcome == cards.LAPSED_SAME_OR_HIGHER:
            notes.append("会员卡未赠送：已持有同级或更高等级的卡")
    if notes:
        rewards["reward_note"] = "；".join(notes)[:255]
    return bonus, rewards


@transactional
def _hold_uncredited(order: Any, transaction_id: str, via: str, raw: dict[str, str], reason: str) -> str:
    before = _flip(order, transaction_id, via, "paid_uncredited")
    _paid_after_close(before, order, raw)
    if before is not None:
        _anomaly("member_frozen", raw, order.id, f"已收款未入账：{reason}；解冻后自动入账，或在后台手动入账")
    return "已收款，待会员卡解冻后入账"


@transactional
def credit_held_order(order_id: int, *, operator: str = "job", staff_id: int | None = None) -> bool:
    """Credit an order paid while the member's card was frozen or lost (``paid_uncredited``), once the
    card is active again. False when it is no longer waiting (credited by another call); ``member_frozen``
    while the card still is. The same guarded flip as a notification makes it happen once."""
    order = _order_row("id", order_id)
    if order is None:
        raise OrderNotFound()
    flipped = db.session.execute(
        update(order_t).where(order_t.c.id == order_id, order_t.c.status == "paid_uncredited").values(status="paid")
    ).rowcount
    if flipped != 1:
        return False
    raw = {"transaction_id": order.transaction_id or "", "out_trade_no": order.out_trade_no}
    _credit_order(order, operator, raw)
    if staff_id is not None:
        org.audit(staff_id, "recharge_credit_held", f"recharge_order:{order_id}", order.out_trade_no)
    return True


def credit_held(staff_id: int, out_trade_no: str) -> RechargeOrder:
    """The console's "credit now" for a ``paid_uncredited`` order (hq_admin, region_manager)."""
    _rule_manager(staff_id)
    order_id = get_order(out_trade_no).id
    db.session.rollback()
    if not credit_held_order(order_id, operator="staff", staff_id=staff_id):  # already credited, or never held
        raise Conflict("该订单不是待入账状态", code="order_not_held")
    return get_order(out_trade_no)


def held_order_ids() -> list[int]:
    """Orders paid while the card was frozen whose member is active again: for the job to credit."""
    ids = list(
        db.session.scalars(
            select(order_t.c.id)
            .join(Member, Member.id == order_t.c.member_id)
            .where(order_t.c.status == "paid_uncredited", Member.status == "active")
            .order_by(order_t.c.id)
            .limit(500)
        )
    )
    db.session.rollback()
    return ids


def _anomaly(kind: str, raw: dict[str, str], order_id: int | None, detail: str) -> None:
    log.warning("recharge anomaly %s (order %s, out_trade_no %r): %s", kind, order_id, raw.get("out_trade_no"), detail)
    db.session.add(
        RechargeAnomaly(
            kind=kind[:32],
            out_trade_no=(raw.get("out_trade_no") or "")[:64] or None,
            transaction_id=(raw.get("transaction_id") or "")[:64] or None,
            order_id=order_id,
            detail=detail[:255],
            raw={k: str(v)[:256] for k, v in list(raw.items())[:40] if k != "sign"},
            created_at=utcnow(),
        )
    )


@transactional
def record_anomaly(kind: str, raw: dict[str, str], order_id: int | None, detail: str) -> None:
    """A notification or query answer that credits nothing, recorded in its own transaction."""
    _anomaly(kind, raw, order_id, detail)


def pending_order_ids(now: datetime | None = None) -> list[int]:
    cutoff = (now or utcnow()) - timedelta(seconds=query_after_seconds())
    ids = list(
        db.session.scalars(
            select(RechargeOrder.id)
            .where(RechargeOrder.status == "pending", RechargeOrder.created_at <= cutoff)
            .order_by(RechargeOrder.id)
            .limit(500)
        )
    )
    db.session.rollback()
    return ids


def reconcile_order(order_id: int, now: datetime | None = None) -> str:
    """Ask WeChat about a pending order: settle it when paid, close it when expired. Idempotent."""
    order = db.session.get(RechargeOrder, order_id, populate_existing=True)
    if order is None or order.status != "pending":
        db.session.rollback()
        return "skipped"
    appid, no, st, expired = order.appid, order.out_trade_no, order.sign_type, order.expires_at <= (now or utcnow())
    db.session.rollback()
    result = pay.order_query(appid, no, st)
    if result.trade_state == "SUCCESS":
        fields = dict(result.fields)
        fields.setdefault("out_trade_no", no)
        problem = _mismatch(order, fields)
        if problem:
            record_anomaly(problem[0], fields, order_id, f"查单：{problem[1]}")
            return "anomaly"
        outcome = settle(_order_row("id", order_id), fields["transaction_id"], via="query", raw=fields)
        return "paid" if outcome.acknowledged else "anomaly"
    if not expired:
        return "waiting"
    if result.trade_state in ("USERPAYING",):
        return "waiting"
    closed = pay.close_order(appid, no, st) if result.trade_state != "ORDERNOTEXIST" else "missing"
    if closed == "paid":
        return "waiting"  # paid in the meantime: the next query settles it
    _close_locally(order_id)
    return "closed"


# ---------------------------------------------------------------------------------------------------
# The merchant: rules, coupon templates, orders, statistics, anomalies


def _rule_manager(staff_id: int) -> Staff:
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise Forbidden("操作员不存在或已停用", code="staff_not_found")
    if staff.role not in RULE_MANAGERS:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    return staff


def require_viewer(staff_id: int) -> Staff:
    staff = db.session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise Forbidden("操作员不存在或已停用", code="staff_not_found")
    if "view_records" not in org.PERMISSIONS[staff.role]:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    return staff


@dataclass(frozen=True)
class CodeTarget:
    """What a printed code (QR or mini-program code) opens: a rule (``code`` None: the recharge home)."""

    code: str | None
    name: str


@transactional
def code_target(
    staff_id: int, rule_id: int | None, store_code: str | None = None, *, active_only: bool = False
) -> CodeTarget:
    """The rule (or, without ``rule_id``, the recharge home) a staff member may print a code of.

    A staff member prints codes within their scope: a ``store_code`` outside it, or a rule offered
    only at stores outside it, is 403 ``store_out_of_scope``; a store the rule is not offered at is
    409 ``rule_not_in_store`` (the code would open a page that refuses to recharge). With
    ``active_only`` an archived rule is 409 ``rule_archived``. Read in a transaction of its own, which
    ends before the caller asks WeChat for anything.
    """
    staff = require_viewer(staff_id)
    store_id = None
    if store_code:
        store_id = org.store_by_code(store_code).id
        if not org.can_access_store(staff, store_id):
            raise Forbidden("不能为其他门店生成二维码", code="store_out_of_scope")
    if rule_id is None:
        return CodeTarget(None, "会员充值")
    rule = get_rule(rule_id)
    if active_only and rule.status != "active":
        raise RuleArchived()
    if not rule.all_stores:
        offered_at = set(
            db.session.scalars(select(RechargeRuleStore.store_id).where(RechargeRuleStore.rule_id == rule.id))
        )
        if store_id is not None and store_id not in offered_at:
            raise RuleNotInStore()
        scope = org.store_ids_in_scope(staff)
        if scope is not None and not offered_at & set(scope):
            raise Forbidden("该充值活动不在您管理的门店", code="store_out_of_scope")
    return CodeTarget(rule.code, rule.name)


def _check_rule_scope(staff: Staff, all_stores: bool, store_ids: list[int]) -> None:
    """HQ sets rules anywhere; a region manager only for stores of the region, never for all stores."""
    if staff.role == "hq_admin":
        return
    if all_stores or not store_ids:
        raise Forbidden("区域经理只能为本区域门店设置充值活动", code="store_out_of_scope")
    scope = set(org.store_ids_in_scope(staff) or [])
    if not set(store_ids) <= scope:
        raise Forbidden("不能为其他区域的门店设置充值活动", code="store_out_of_scope")


def _new_rule_code() -> str:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


RULE_FIELDS = (
    "name",
    "amount_fen",
    "bonus_fen",
    "points",
    "coupon_template_id",
    "coupon_qty",
    "card_type_id",
    "card_only_non_members",
    "starts_at",
    "ends_at",
    "sort_order",
)


def _apply_rule_fields(rule: RechargeRule, fields: dict[str, Any]) -> None:
    # References first: a lookup after setting them would flush a foreign key that does not exist.
    if fields.get("coupon_template_id") is not None:
        coupons.get_template(fields["coupon_template_id"])
    if fields.get("card_type_id") is not None:
        cards.get_card_type(fields["card_type_id"])
    for name in RULE_FIELDS:
        if name in fields:
            setattr(rule, name, fields[name])
    if not rule.name or not rule.name.strip():
        raise ValidationFailed("请填写活动名称", code="invalid_rule_name")
    if not isinstance(rule.amount_fen, int) or not 0 < rule.amount_fen <= ledger.MAX_AMOUNT_FEN:
        raise ValidationFailed("充值金额必须是 1 分到 100 万元之间的整数（分）", code="invalid_amount")
    if (rule.bonus_fen or 0) < 0 or (rule.bonus_fen or 0) > rule.amount_fen * 10:
        raise ValidationFailed("赠送金额无效", code="invalid_bonus")
    if (rule.points or 0) < 0:
        raise ValidationFailed("赠送积分无效", code="invalid_points")
    if rule.coupon_template_id is not None:
        coupons.get_template(rule.coupon_template_id)
        if not 1 <= (rule.coupon_qty or 0) <= 100:
            raise ValidationFailed("赠券数量须在 1-100 之间", code="invalid_coupon_qty")
    else:
        rule.coupon_qty = 0
    if rule.card_type_id is not None:
        cards.get_card_type(rule.card_type_id)
    if rule.starts_at and rule.ends_at and rule.ends_at <= rule.starts_at:
        raise ValidationFailed("结束时间必须晚于开始时间", code="invalid_window")


def _set_rule_stores(rule: RechargeRule, store_codes: list[str] | None) -> list[int]:
    ids = [org.store_by_code(code).id for code in (store_codes or [])]
    db.session.execute(RechargeRuleStore.__table__.delete().where(RechargeRuleStore.rule_id == rule.id))
    for store_id in sorted(set(ids)):
        db.session.add(RechargeRuleStore(rule_id=rule.id, store_id=store_id))
    return ids


@transactional
def create_rule(staff_id: int, fields: dict[str, Any]) -> RechargeRule:
    staff = _rule_manager(staff_id)
    store_codes = fields.get("store_codes") or []
    all_stores = not store_codes
    store_ids = [org.store_by_code(code).id for code in store_codes]
    _check_rule_scope(staff, all_stores, store_ids)
    now = utcnow()
    rule = RechargeRule(code=_new_rule_code(), status="active", all_stores=all_stores, created_at=now, updated_at=now)
    rule.bonus_fen, rule.points, rule.sort_order, rule.card_only_non_members = 0, 0, 0, False
    _apply_rule_fields(rule, fields)
    db.session.add(rule)
    db.session.flush()
    _set_rule_stores(rule, store_codes)
    org.audit(staff_id, "rule_create", f"recharge_rule:{rule.id}", rule.name)
    return rule


def _rule_for_edit(staff: Staff, rule_id: int) -> RechargeRule:
    rule = db.session.get(RechargeRule, rule_id, with_for_update=True)
    if rule is None:
        raise RuleNotFound()
    current = [
        row
        for row in db.session.scalars(select(RechargeRuleStore.store_id).where(RechargeRuleStore.rule_id == rule.id))
    ]
    _check_rule_scope(staff, rule.all_stores, current)
    return rule


@transactional
def update_rule(staff_id: int, rule_id: int, fields: dict[str, Any]) -> RechargeRule:
    """Edit a rule; orders already placed keep their snapshot."""
    staff = _rule_manager(staff_id)
    rule = _rule_for_edit(staff, rule_id)
    if rule.status == "archived":
        raise RuleArchived("已下架的活动不能修改")
    _apply_rule_fields(rule, fields)
    if "store_codes" in fields:
        codes = fields.get("store_codes") or []
        ids = [org.store_by_code(code).id for code in codes]
        _check_rule_scope(staff, not codes, ids)
        rule.all_stores = not codes
        _set_rule_stores(rule, codes)
    rule.updated_at = utcnow()
    org.audit(staff_id, "rule_update", f"recharge_rule:{rule.id}", rule.name)
    return rule


@transactional
def archive_rule(staff_id: int, rule_id: int) -> RechargeRule:
    """Archive (never delete: orders point at the rule). Archiving twice changes nothing."""
    staff = _rule_manager(staff_id)
    rule = _rule_for_edit(staff, rule_id)
    if rule.status != "archived":
        rule.status = "archived"
        rule.updated_at = utcnow()
        org.audit(staff_id, "rule_archive", f"recharge_rule:{rule.id}", rule.name)
    return rule


@transactional
def reorder_rules(staff_id: int, rule_ids: list[int]) -> list[RechargeRule]:
    staff = _rule_manager(staff_id)
    rules = []
    for position, rule_id in enumerate(rule_ids, start=1):
        rule = _rule_for_edit(staff, rule_id)
        rule.sort_order = position * 10
        rules.append(rule)
    return rules


def list_rules(staff_id: int, status: str | None = None) -> list[RechargeRule]:
    require_viewer(staff_id)
    query = select(RechargeRule).order_by(RechargeRule.sort_order, RechargeRule.id)
    if status:
        query = query.where(RechargeRule.status == status)
    return list(db.session.scalars(query))


def get_rule(rule_id: int) -> RechargeRule:
    rule = db.session.get(RechargeRule, rule_id)
    if rule is None:
        raise RuleNotFound()
    return rule


@transactional
def save_coupon_template(staff_id: int, fields: dict[str, Any], template_id: int | None = None) -> CouponTemplate:
    _rule_manager(staff_id)
    if template_id is None:
        template = CouponTemplate(created_at=utcnow(), threshold_fen=0, validity_days=30)
        db.session.add(template)
    else:
        template = coupons.get_template(template_id)
    for name in ("name", "kind", "value", "threshold_fen", "validity_days", "stock", "issue_until"):
        if name in fields:
            setattr(template, name, fields[name])
    coupons.validate_template(
        {
            "kind": template.kind,
            "value": template.value,
            "threshold_fen": template.threshold_fen,
            "stock": template.stock,
        }
    )
    if not template.name:
        raise ValidationFailed("请填写券名称", code="invalid_coupon_name")
    db.session.flush()
    org.audit(staff_id, "coupon_template_save", f"coupon_template:{template.id}", template.name)
    return template


def list_coupon_templates(staff_id: int) -> list[CouponTemplate]:
    require_viewer(staff_id)
    return list(db.session.scalars(select(CouponTemplate).order_by(CouponTemplate.id)))


@transactional
def save_settings(staff_id: int, fields: dict[str, Any]) -> RechargeSettings:
    staff = _rule_manager(staff_id)
    if staff.role != "hq_admin":
        raise Forbidden("只有总部管理员可以修改充值设置", code="permission_denied")
    merchant = org.get_merchant()
    row = db.session.get(RechargeSettings, merchant.id)
    if row is None:
        row = RechargeSettings(
            merchant_id=merchant.id, free_amount_enabled=False, free_min_fen=1_000, free_max_fen=500_000
        )
        db.session.add(row)
    for name in ("free_amount_enabled", "free_min_fen", "free_max_fen"):
        if name in fields:
            setattr(row, name, fields[name])
    if not 0 < row.free_min_fen <= row.free_max_fen:
        raise ValidationFailed("最低金额须大于 0 且不高于最高金额", code="invalid_free_bounds")
    db.session.flush()
    return row


@dataclass(frozen=True)
class OrderFilter:
    rule_id: int | None = None
    store_code: str | None = None
    src: str | None = None
    status: str | None = None
    out_trade_no: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    paid_from: datetime | None = None
    paid_to: datetime | None = None


def _order_conditions(staff: Staff, f: OrderFilter) -> list[Any]:
    conditions: list[Any] = []
    scope = org.store_ids_in_scope(staff)
    if scope is not None:
        conditions.append(order_t.c.store_id.in_(scope))
    if f.rule_id is not None:
        conditions.append(order_t.c.rule_id == f.rule_id)
    if f.store_code:
        store = org.store_by_code(f.store_code)
        if scope is not None and store.id not in scope:
            raise Forbidden("不能查看其他门店的数据", code="store_out_of_scope")
        conditions.append(order_t.c.store_id == store.id)
    if f.src:
        conditions.append(order_t.c.src == f.src)
    if f.status:
        conditions.append(order_t.c.status == f.status)
    if f.out_trade_no:
        conditions.append(order_t.c.out_trade_no == f.out_trade_no)
    if f.created_from:
        conditions.append(order_t.c.created_at >= f.created_from)
    if f.created_to:
        conditions.append(order_t.c.created_at < f.created_to)
    if f.paid_from:
        conditions.append(order_t.c.paid_at >= f.paid_from)
    if f.paid_to:
        conditions.append(order_t.c.paid_at < f.paid_to)
    return conditions


def list_orders(staff_id: int, f: OrderFilter, *, page: int = 1, per_page: int = 50) -> tuple[list[RechargeOrder], int]:
    staff = require_viewer(staff_id)
    where = and_(true(), *_order_conditions(staff, f))
    from ..records.service import count_capped  # a million orders are not counted for a page of 50

    total = count_capped(select(order_t.c.id).where(where))
    orders = db.session.scalars(
        select(RechargeOrder)
        .where(where)
        .order_by(RechargeOrder.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return list(orders), total


def stats(staff_id: int, group_by: str, f: OrderFilter) -> list[dict[str, Any]]:
    """Per rule or per source tag: orders, paying members, money in, bonus given, coupons given and lapsed."""
    staff = require_viewer(staff_id)
    if group_by not in ("rule", "src"):
        raise ValidationFailed("group_by 只能是 rule 或 src", code="invalid_group_by")
    key = order_t.c.rule_id if group_by == "rule" else order_t.c.src
    paid = order_t.c.status.in_(CREDITED)  # the money arrived (paid_uncredited: held for a frozen card)
    credited = order_t.c.status == "paid"
    paid_int = case((paid, 1), else_=0)
    query = (
        select(
            key.label("key"),
            func.count().label("orders"),
            func.sum(paid_int).label("paid_orders"),
            func.count(func.distinct(case((paid, order_t.c.member_id)))).label("members"),
            func.coalesce(func.sum(case((paid, order_t.c.amount_fen), else_=0)), 0).label("paid_fen"),
            func.coalesce(func.sum(case((credited, order_t.c.bonus_fen), else_=0)), 0).label("bonus_fen"),
            func.sum(case((order_t.c.status == "paid_uncredited", 1), else_=0)).label("uncredited_orders"),
            func.coalesce(func.sum(order_t.c.coupons_granted), 0).label("coupons_granted"),
            func.coalesce(func.sum(order_t.c.coupons_lapsed), 0).label("coupons_lapsed"),
        )
        .where(and_(true(), *_order_conditions(staff, f)))
        .group_by(key)
        .order_by(key)
    )
    names: dict[int, str] = {}
    if group_by == "rule":
        names = dict(db.session.execute(select(RechargeRule.id, RechargeRule.name)).all())  # type: ignore[arg-type]
    rows = []
    for row in db.session.execute(query):
        item = {
            "key": row.key,
            "orders": int(row.orders),
            "paid_orders": int(row.paid_orders or 0),
            "members": int(row.members),
            "paid_fen": int(row.paid_fen),
            "bonus_fen": int(row.bonus_fen),
            "coupons_granted": int(row.coupons_granted),
            "coupons_lapsed": int(row.coupons_lapsed),
            "uncredited_orders": int(row.uncredited_orders or 0),
        }
        if group_by == "rule":
            item["rule_name"] = names.get(row.key) if row.key is not None else "自定义金额"
        rows.append(item)
    return rows


def list_anomalies(staff_id: int, *, page: int = 1, per_page: int = 50) -> tuple[list[RechargeAnomaly], int]:
    staff = require_viewer(staff_id)
    if staff.role not in RULE_MANAGERS:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    total = int(db.session.scalar(select(func.count()).select_from(RechargeAnomaly)) or 0)
    rows = db.session.scalars(
        select(RechargeAnomaly).order_by(RechargeAnomaly.id.desc()).offset((page - 1) * per_page).limit(per_page)
    )
    return list(rows), total


@transactional
def ensure_rule(code: str, fields: dict[str, Any]) -> RechargeRule:
    """A rule with this short code, created once (demo data, imports); an existing one is left as it is."""
    rule = db.session.scalars(select(RechargeRule).where(RechargeRule.code == code)).first()
    if rule is None:
        now = utcnow()
        rule = RechargeRule(code=code, status="active", all_stores=True, created_at=now, updated_at=now)
        rule.bonus_fen, rule.points, rule.sort_order, rule.card_only_non_members = 0, 0, 0, False
        _apply_rule_fields(rule, fields)
        db.session.add(rule)
        db.session.flush()
    return rule


@transactional
def ensure_coupon_template(name: str, fields: dict[str, Any]) -> CouponTemplate:
    template = db.session.scalars(select(CouponTemplate).where(CouponTemplate.name == name)).first()
    if template is None:
        template = CouponTemplate(name=name, created_at=utcnow(), **{"threshold_fen": 0, "validity_days": 30, **fields})
        coupons.validate_template(fields)
        db.session.add(template)
        db.session.flush()
    return template
