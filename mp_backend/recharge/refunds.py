"""Recharge refunds: the merchant gives a WeChat Pay recharge back.

What is taken back, decided when the refund is requested (one refund per recharge order):

- principal back ``P`` = the order's amount, or less when the member has spent some of it (never
  more than the member still has);
- bonus: the order's bonus the member still has, ``B = min(order bonus, wallet bonus)``; the rest,
  ``S = order bonus - B``, counts as spent. (Bonus is one bucket per wallet, not a lot per recharge:
  "spent" means the wallet holds less bonus than this recharge gave.)
- the merchant's policy (``RECHARGE_REFUND_BONUS_POLICY``): ``deduct_spent_bonus`` refunds
  ``P - S`` in cash (the spent bonus is paid for out of the refund); ``refuse`` refuses the refund
  (``recharge_bonus_spent``) when ``S > 0``.

``P + B`` is HELD in the request's transaction, so spending before WeChat confirms cannot shrink it:
exactly ``P`` from principal and ``B`` from bonus (``ledger.hold(buckets=...)``, decided on the wallet
locked in that transaction), whatever the spending policy, so the member's other money, paid-in or
gift, is never touched. The cash ``P - S`` goes back through WeChat Pay's refund API. WeChat's refund
notification SUCCESS captures the hold in full (those same buckets); a refusal or a failed refund voids
it (they come back as they were).

Rewards: coupons the recharge gave that are still unused are voided (status ``expired``) when the
refund succeeds; used ones stay used. The points it gave (the rule's reward points and those the
earning rules gave) are taken back then too, as far as the member still has them (``points_refund``
records what could not be taken back).
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select, update

from ..errors import Conflict, ValidationFailed
from ..extensions import db
from ..ledger import service as ledger
from ..loyalty import service as loyalty
from ..models_base import utcnow
from ..money import yuan
from ..notices import service as notices
from ..org import service as org
from ..transaction import transactional
from ..wechat import refunds as wechat_refunds
from .models import Coupon, RechargeOrder

OUT_REFUND_NO_PREFIX = "Q"
POLICIES = ("deduct_spent_bonus", "refuse")
REFUND_PERMISSION = "reverse_entry"


def _models() -> Any:
    from ..spending.models import RechargeRefund

    return RechargeRefund


class RechargeNotRefundable(Conflict):
    code, message = "recharge_not_refundable", "该充值订单不能退款"


class RechargeBonusSpent(Conflict):
    code, message = "recharge_bonus_spent", "该笔充值赠送的金额已被使用，按商户规定不能退款"


class RechargeAlreadyRefunded(Conflict):
    code, message = "recharge_already_refunded", "该充值订单已申请过退款"


def policy() -> str:
    value = current_app.config.get("RECHARGE_REFUND_BONUS_POLICY") or "deduct_spent_bonus"
    if value not in POLICIES:
        raise ValidationFailed("退款赠送金额规则配置有误", code="invalid_refund_policy")
    return str(value)


def refund_recharge(staff_id: int, out_trade_no: str, *, reason: str = "") -> tuple[Any, bool]:
    """Request the refund of a paid WeChat Pay recharge (console: permission ``reverse_entry`` in the
    order's store, audit row): (the refund, whether it was asked before). Asking again for the same order
    answers with the refund already asked (resending it to WeChat if WeChat never answered)."""
    if not isinstance(reason, str) or len(reason) > 255:
        raise ValidationFailed("退款原因最长 255 个字符", code="invalid_reason")
    refund_id, replayed = _open(staff_id, out_trade_no[:64], reason)
    model = _models()
    refund = db.session.get(model, refund_id, populate_existing=True)
    if refund.status == "processing" and refund.refund_id is None:
        _send(refund_id)
    return db.session.get(model, refund_id, populate_existing=True), replayed


@transactional
def _open(staff_id: int, out_trade_no: str, reason: str) -> tuple[int, bool]:
    model = _models()
    order = db.session.scalars(
        select(RechargeOrder).where(RechargeOrder.out_trade_no == out_trade_no).with_for_update()
    ).first()
    if order is None:
        from .service import OrderNotFound

        raise OrderNotFound()
    org.require_permission(staff_id, REFUND_PERMISSION, order.store_id)
    existing = db.session.scalars(select(model).where(model.order_id == order.id)).first()
    if existing is not None:
        if existing.status == "failed":
            raise RechargeAlreadyRefunded("该充值订单的退款已失败，请联系技术支持", details={"status": "failed"})
        return int(existing.id), True
    if order.status != "paid":
        raise RechargeNotRefundable("只有已入账的微信充值订单可以退款")
    chosen = policy()
    balance = ledger.get_balance(order.member_id, for_update=True)  # nothing spends until the hold is in
    principal_back = min(order.amount_fen, balance.principal_fen)
    bonus_back = min(order.bonus_fen, balance.bonus_fen)
    bonus_spent = order.bonus_fen - bonus_back
    if bonus_spent and chosen == "refuse":
        raise RechargeBonusSpent(details={"bonus_spent_fen": bonus_spent})
    cash = principal_back - bonus_spent
    if principal_back <= 0 or cash <= 0:
        raise RechargeNotRefundable(
            "该笔充值已基本用完，可退金额为 0",
            details={"principal_fen": principal_back, "bonus_spent_fen": bonus_spent},
        )
    from ..spending.refunds import new_out_refund_no

    no = new_out_refund_no(OUT_REFUND_NO_PREFIX)
    posting = ledger.hold(
        order.member_id,
        principal_back + bonus_back,
        key=f"recharge-refund:{order.out_trade_no}:hold",
        operator=f"staff:{staff_id}",
        store_id=order.store_id,
        reference=order.out_trade_no,
        note=f"充值退款冻结：退 {yuan(cash)} 元"[:255],
        buckets={"principal": principal_back, "bonus": bonus_back},
    )
    refund = model(
        order_id=order.id,
        member_id=order.member_id,
        policy=chosen,
        principal_fen=principal_back,
        bonus_fen=bonus_back,
        bonus_spent_fen=bonus_spent,
        take_fen=principal_back + bonus_back,
        cash_fen=cash,
        hold_entry_id=posting.entry_id,
        out_refund_no=no,
        status="processing",
        coupons_voided=0,
        staff_id=staff_id,
        reason=reason,
        failure="",
        created_at=utcnow(),
    )
    db.session.add(refund)
    db.session.flush()
    org.audit(staff_id, "recharge_refund", f"recharge_order:{order.id}", f"cash {cash} fen, take {refund.take_fen} fen")
    return int(refund.id), False


def _send(refund_id: int) -> None:
    model = _models()
    refund = db.session.get(model, refund_id, populate_existing=True)
    order = db.session.get(RechargeOrder, refund.order_id)
    assert order is not None
    from ..spending.refunds import refund_notify_url

    args = {
        "out_trade_no": order.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "total_fee": order.amount_fen,
        "refund_fee": refund.cash_fen,
        "notify_url": refund_notify_url(),
        "sign_type": order.sign_type,
        "reason": refund.reason,
    }
    appid = order.appid
    db.session.rollback()
    answer = wechat_refunds.apply_refund(appid, **args)
    if answer.outcome == "accepted":
        db.session.execute(
            update(model.__table__)
            .where(model.__table__.c.id == refund_id, model.__table__.c.refund_id.is_(None))
            .values(refund_id=answer.refund_id[:32] or None)
        )
        db.session.commit()
    elif answer.outcome == "refused":
        settle_refund(refund_id, success=False, why=f"微信拒绝退款：{answer.message}")
        raise Conflict("微信支付拒绝了退款，冻结的余额已解冻", code="wechat_refund_refused")
    else:
        from ..errors import UpstreamError

        raise UpstreamError("微信支付暂时无应答，退款处理中，请稍后重试")


@transactional
def settle_refund(refund_id: int, *, success: bool, wechat_refund_id: str = "", why: str = "") -> bool:
    """WeChat's answer, once: SUCCESS captures the hold and voids the unused coupons; otherwise the
    hold is voided. A second call (WeChat's retry) changes nothing."""
    model = _models()
    table = model.__table__
    values: dict[str, Any] = {"status": "success" if success else "failed", "settled_at": utcnow()}
    if success:
        values["refund_id"] = wechat_refund_id[:32]
    else:
        values["failure"] = why[:255]
    flipped = db.session.execute(
        update(table).where(table.c.id == refund_id, table.c.status == "processing").values(**values)
    ).rowcount
    if flipped != 1:
        return False
    refund = db.session.get(model, refund_id, populate_existing=True)
    order = db.session.get(RechargeOrder, refund.order_id)
    assert order is not None
    common = {"operator": "wechat_pay", "store_id": order.store_id, "reference": order.out_trade_no}
    if success:
        posting = ledger.capture(
            refund.hold_entry_id,
            key=f"recharge-refund:{order.out_trade_no}:capture",
            note=f"充值退款：微信退回 {yuan(refund.cash_fen)} 元",
            **common,
        )
        notices.notify_after_commit(posting, title="充值退款")
        coupon_t = Coupon.__table__
        voided = db.session.execute(
            update(coupon_t)
            .where(coupon_t.c.order_id == order.id, coupon_t.c.status == "unused")
            .values(status="expired")
        ).rowcount
        refund.coupons_voided = voided
        loyalty.refund_points(  # its reward points and the points it earned, as far as the member has them
            order.member_id,
            f"recharge:{order.out_trade_no}",
            refund_key=f"recharge-refund:{refund.id}",
            refund_fen=order.amount_fen,
            payment_fen=order.amount_fen,
        )
    else:
        posting = ledger.void(
            refund.hold_entry_id, key=f"recharge-refund:{order.out_trade_no}:void", note="充值退款失败，解冻", **common
        )
    refund.settle_entry_id = posting.entry_id
    return True


def notified_refund(out_refund_no: str) -> Any:
    """The record a refund notification (``spending.refunds.handle_refund_notification``) is checked
    against: a ``NotifiedRefund``, or None for an unknown ``out_refund_no``."""
    from ..spending.refunds import NotifiedRefund

    model = _models()
    refund = db.session.scalars(select(model).where(model.out_refund_no == out_refund_no)).first()
    if refund is None:
        return None
    order = db.session.get(RechargeOrder, refund.order_id)
    assert order is not None
    return NotifiedRefund(refund.id, refund.status, refund.refund_id, order.appid, order.out_trade_no, refund.cash_fen)


def settle_notified(refund_id: int, success: bool, wechat_refund_id: str, why: str) -> None:
    settle_refund(refund_id, success=success, wechat_refund_id=wechat_refund_id, why=why)


def _order_no(order_id: int) -> str:
    return str(db.session.scalar(select(RechargeOrder.out_trade_no).where(RechargeOrder.id == order_id)))


def refund_dict(refund: Any) -> dict[str, Any]:
    return {
        "id": refund.id,
        "status": refund.status,
        "policy": refund.policy,
        "principal_fen": refund.principal_fen,
        "bonus_fen": refund.bonus_fen,
        "bonus_spent_fen": refund.bonus_spent_fen,
        "take_fen": refund.take_fen,
        "cash_fen": refund.cash_fen,
        "out_refund_no": refund.out_refund_no,
        "coupons_voided": refund.coupons_voided,
        "points_taken_back": loyalty.points_taken_back(f"recharge:{_order_no(refund.order_id)}"),
        "failure": refund.failure,
        "created_at": refund.created_at.isoformat(),
        "settled_at": refund.settled_at.isoformat() if refund.settled_at else None,
    }
