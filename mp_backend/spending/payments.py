"""Members pay a merchant's order with their balance, and with WeChat Pay for what balance does not cover.

``pay_order``: the pay password is checked first (its own transaction, so a wrong try counts even
though the payment is refused). Then one transaction records the ``order_payment`` and moves the
money: the member's card discount (``members.cards``) is applied; when the available balance covers
what is payable it is debited at once (``paid``); otherwise the whole balance is HELD and a WeChat Pay
JSAPI order is placed for the rest, with the app the member came through (``pending``). WeChat's
payment notification for the rest captures the hold (``paid``); a failed or expired WeChat payment
voids it (``failed``: the job ``jobs.spending.reconcile_pending_payments`` asks WeChat and closes it).

Idempotency: the client's ``request_id`` is UNIQUE per member, and so is the merchant's ``order_no``
(one payment per order). A retried request answers with the first payment; a racing copy loses on
the UNIQUE key, its transaction is run again (``RetryTransaction``) and then finds the winner's row.
The ledger's own keys (``payment:<id>:debit`` ...) are the second defence.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AppError, Conflict, IdempotencyConflict, InvalidAmount, MemberFrozen, NotFound, ValidationFailed
from ..extensions import db
from ..ledger import service as ledger
from ..loyalty import service as loyalty
from ..members import cards
from ..members.models import Member, MemberOpenid
from ..models_base import utcnow
from ..money import yuan
from ..notices import service as notices
from ..org import service as org
from ..recharge.service import order_ttl_seconds, query_after_seconds, sign_type
from ..transaction import RetryTransaction, transactional
from ..wechat import pay
from . import password as pay_password
from .models import OrderPayment

log = logging.getLogger(__name__)

payment_t = OrderPayment.__table__
OUT_TRADE_NO_PREFIX = "P"  # recharge orders start with R: the notification dispatch goes by it
_TEXT_ID = re.compile(r"\A[0-9A-Za-z_\-.:]{1,64}\Z")


class PaymentNotFound(NotFound):
    code, message = "payment_not_found", "支付记录不存在"


class OrderAlreadyPaid(Conflict):
    code, message = "order_already_paid", "该订单已有支付记录，请勿重复支付"


def _text_id(value: object, field: str, label: str) -> str:
    if not isinstance(value, str) or not _TEXT_ID.match(value):
        raise ValidationFailed(f"{label}须为 1-64 位字母、数字或 _-.:", code=f"invalid_{field}")
    return value


def payment_key(payment_id: int) -> str:
    """The payment's own key: its ledger keys are ``payment:<id>:<part>``, its points keys are derived
    from it (``earn:payment:<id>``, ``redeem:payment:<id>``)."""
    return f"payment:{payment_id}"


def new_out_trade_no() -> str:
    china = datetime.utcnow() + timedelta(hours=8)  # noqa: DTZ003 (a label, not a stored time)
    return f"{OUT_TRADE_NO_PREFIX}{china:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"


def discounted(amount_fen: int, discount_percent: int) -> int:
    """What the member pays at ``discount_percent`` (95 = 5 % off), rounded half up to the fen."""
    return (amount_fen * discount_percent + 50) // 100


@dataclass(frozen=True)
class PaymentResult:
    payment: OrderPayment
    pay_params: dict[str, str] | None = None  # for wx.requestPayment when a WeChat part is due
    replayed: bool = False


def pay_order(
    member_id: int,
    appid: str,
    *,
    order_no: object,
    amount_fen: object,
    pay_password_text: object,
    request_id: object,
    store_code: str | None = None,
    client_ip: str = "",
    points_count: object = 0,
) -> PaymentResult:
    """``points_count``: points to redeem against the order (after the card discount), at the
    merchant's rate and within its maximum share; refused (nothing changes) beyond what the member has
    (``insufficient_points``) or the share (``points_over_order_limit``)."""
    order_no = _text_id(order_no, "order_no", "订单号")
    request_id = _text_id(request_id, "request_id", "请求号")
    if type(amount_fen) is not int or not 0 < amount_fen <= ledger.MAX_AMOUNT_FEN:
        raise InvalidAmount(details={"max_fen": ledger.MAX_AMOUNT_FEN})
    if type(points_count) is not int or points_count < 0:
        raise ValidationFailed("抵扣积分必须是非负整数", code="invalid_points")
    store_id = org.store_by_code(store_code).id if store_code else None
    db.session.rollback()
    pay_password.verify(member_id, pay_password_text)
    payment, replayed = _open_payment(member_id, appid, order_no, request_id, amount_fen, store_id, points_count)
    if payment.status != "pending":
        return PaymentResult(payment, None, replayed)
    # The WeChat part: the unified order is idempotent at WeChat for one out_trade_no, so a retried
    # request asks again and gets the same prepay.
    try:
        prepay = pay.unified_order(
            appid=payment.appid or "",
            openid=payment.openid or "",
            out_trade_no=payment.out_trade_no or "",
            total_fee=payment.wechat_fen,
            body=f"订单支付-{order_no}"[:120],
            notify_url=f"{current_app.config['PUBLIC_BASE_URL']}/wechat/pay/notify",
            client_ip=client_ip,
            sign_type=payment.sign_type or "HMAC-SHA256",
            expire_seconds=order_ttl_seconds(),
        )
    except AppError:
        if not replayed:
            fail_payment(payment.id, "微信下单失败")
        raise
    _set_prepay(payment.id, prepay.prepay_id)
    return PaymentResult(get_payment_by_id(payment.id), prepay.pay_params, replayed)


@transactional
def _open_payment(
    member_id: int,
    appid: str,
    order_no: str,
    request_id: str,
    amount_fen: int,
    store_id: int | None,
    points_count: int = 0,
) -> tuple[OrderPayment, bool]:
    # One statement for both keys: at READ COMMITTED two lookups could straddle a racing copy's commit
    # (no row by request id, then its row by order number) and refuse a mere retry.
    earlier = db.session.scalars(
        select(OrderPayment).where(
            OrderPayment.member_id == member_id,
            (OrderPayment.request_id == request_id) | (OrderPayment.order_no == order_no),
        )
    ).all()
    first = next((p for p in earlier if p.request_id == request_id), None)
    if first is not None:
        if (first.order_no, first.amount_fen, first.store_id, first.points_used) != (
            order_no,
            amount_fen,
            store_id,
            points_count,
        ):
            raise IdempotencyConflict()
        return first, True
    if earlier:
        raise OrderAlreadyPaid(details={"status": earlier[0].status})
    member = db.session.get(Member, member_id)
    if member is None:
        raise NotFound("会员不存在", code="member_not_found")
    if member.status != "active":
        raise MemberFrozen()
    card = cards.card_of(member_id)
    percent = card.discount_percent if card is not None else 100
    after_card = discounted(amount_fen, percent)
    points_fen = loyalty.redemption_fen(points_count, after_card) if points_count else 0
    if points_fen >= after_card:
        raise ValidationFailed(
            "积分不能抵扣订单的全部金额，请减少抵扣积分", code="points_cover_whole_order", status=409
        )
    payable = after_card - points_fen
    available = ledger.get_balance(member_id).available_fen
    now = utcnow()
    payment = OrderPayment(
        member_id=member_id,
        order_no=order_no,
        request_id=request_id,
        amount_fen=amount_fen,
        discount_percent=percent,
        discount_fen=amount_fen - payable,
        payable_fen=payable,
        points_used=points_count,
        points_fen=points_fen,
        store_id=store_id,
        refunded_balance_fen=0,
        refunded_wechat_fen=0,
        failure="",
        created_at=now,
    )
    if available >= payable:
        payment.balance_fen, payment.wechat_fen, payment.status, payment.paid_at = payable, 0, "paid", now
    else:
        openid = db.session.scalars(
            select(MemberOpenid.openid).where(MemberOpenid.member_id == member_id, MemberOpenid.appid == appid)
        ).first()
        if not openid:
            raise ValidationFailed("余额不足，请在微信中打开后用微信支付补足差额", code="wechat_identity_missing")
        payment.balance_fen, payment.wechat_fen, payment.status = available, payable - available, "pending"
        payment.out_trade_no = new_out_trade_no()
        payment.appid, payment.mch_id, payment.openid = appid, current_app.config["WECHAT_PAY_MCH_ID"], openid
        payment.sign_type = sign_type()
        payment.expires_at = now + timedelta(seconds=order_ttl_seconds())
    db.session.add(payment)
    try:
        db.session.flush()
    except IntegrityError as error:  # a racing copy of this request (or order) committed first
        raise RetryTransaction() from error
    if points_count:  # spent in this transaction: short of points, nothing of the payment stays
        loyalty.redeem_for_order(
            member_id, points_count, order_fen=after_card, key=payment_key(payment.id), reference=order_no[:64]
        )
    common = {"operator": "member", "store_id": store_id, "reference": order_no[:64]}
    if payment.status == "paid":
        posting = ledger.debit(member_id, payable, key=f"payment:{payment.id}:debit", note="订单余额支付", **common)
        payment.debit_entry_id = posting.entry_id
        notices.notify_after_commit(posting, title="余额支付")
        loyalty.on_spend(
            member_id, payable, payment_key=payment_key(payment.id), store_id=store_id, reference=order_no[:64]
        )
    elif payment.balance_fen:
        posting = ledger.hold(
            member_id, payment.balance_fen, key=f"payment:{payment.id}:hold", note="订单支付（待微信支付）", **common
        )
        payment.hold_entry_id = posting.entry_id
    db.session.flush()
    return payment, False


@transactional
def _set_prepay(payment_id: int, prepay_id: str) -> None:
    db.session.execute(update(payment_t).where(payment_t.c.id == payment_id).values(prepay_id=prepay_id[:64]))


@transactional
def fail_payment(payment_id: int, reason: str) -> bool:
    """The WeChat part failed or expired: the payment is ``failed`` and its hold is voided, once."""
    flipped = db.session.execute(
        update(payment_t)
        .where(payment_t.c.id == payment_id, payment_t.c.status == "pending")
        .values(status="failed", failure=reason[:255])
    ).rowcount
    if flipped != 1:
        return False
    payment = db.session.get(OrderPayment, payment_id, populate_existing=True)
    assert payment is not None
    if payment.hold_entry_id is not None:
        posting = ledger.void(
            payment.hold_entry_id,
            key=f"payment:{payment_id}:void",
            operator="wechat_pay",
            store_id=payment.store_id,
            reference=payment.order_no,
            note=f"订单支付失败，解冻：{reason}"[:255],
        )
        payment.void_entry_id = posting.entry_id
    if payment.points_used:  # the points redeemed for it go back
        loyalty.refund_points(
            payment.member_id,
            payment_key(payment_id),
            refund_key="failed",
            refund_fen=payment.payable_fen,
            payment_fen=payment.payable_fen,
        )
    log.info("payment %s failed: %s", payment_id, reason)
    return True


def get_payment_by_id(payment_id: int) -> OrderPayment:
    payment = db.session.get(OrderPayment, payment_id, populate_existing=True)
    if payment is None:
        raise PaymentNotFound()
    return payment


def get_payment(member_id: int, order_no: str) -> OrderPayment:
    payment = db.session.scalars(
        select(OrderPayment).where(OrderPayment.member_id == member_id, OrderPayment.order_no == order_no[:64])
    ).first()
    if payment is None:
        raise PaymentNotFound()
    return payment


def payment_dict(payment: OrderPayment, *, admin: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_no": payment.order_no,
        "status": payment.status,
        "amount_fen": payment.amount_fen,
        "discount_percent": payment.discount_percent,
        "discount_fen": payment.discount_fen,
        "payable_fen": payment.payable_fen,
        "points_used": payment.points_used,
        "points_fen": payment.points_fen,
        "balance_fen": payment.balance_fen,
        "wechat_fen": payment.wechat_fen,
        "refunded_balance_fen": payment.refunded_balance_fen,
        "refunded_wechat_fen": payment.refunded_wechat_fen,
        "out_trade_no": payment.out_trade_no,
        "summary": _summary(payment),
        "created_at": payment.created_at.isoformat(),
        "paid_at": payment.paid_at.isoformat() if payment.paid_at else None,
        "balance": ledger.get_balance(payment.member_id).as_dict(),
    }
    if admin:
        body.update(
            id=payment.id,
            member_id=payment.member_id,
            store_id=payment.store_id,
            transaction_id=payment.transaction_id,
            failure=payment.failure,
        )
    return body


def _summary(payment: OrderPayment) -> str:
    words = [f"订单金额 {yuan(payment.amount_fen)} 元"]
    if payment.discount_fen - payment.points_fen:
        words.append(
            f"会员 {payment.discount_percent / 10:g} 折优惠 {yuan(payment.discount_fen - payment.points_fen)} 元"
        )
    if payment.points_fen:
        words.append(f"{payment.points_used} 积分抵扣 {yuan(payment.points_fen)} 元")
    words.append(f"实付 {yuan(payment.payable_fen)} 元")
    if payment.balance_fen:
        words.append(f"余额 {yuan(payment.balance_fen)} 元")
    if payment.wechat_fen:
        words.append(f"微信支付 {yuan(payment.wechat_fen)} 元")
    return "，".join(words)


# ---------------------------------------------------------------------------------------------------
# WeChat's notification for the rest, and the job for the notification that never came


@dataclass(frozen=True)
class Outcome:
    acknowledged: bool
    message: str = "OK"


def is_order_payment(out_trade_no: str) -> bool:
    return out_trade_no.startswith(OUT_TRADE_NO_PREFIX)


def handle_notification(fields: dict[str, str]) -> Outcome:
    """A payment notification for an order payment's WeChat part (``fields``: the parsed XML).

    Verified with the sign type the order was placed with; appid, mch_id, return_code, result_code
    and total_fee are checked against our record. SUCCESS captures the hold once; a result_code FAIL
    voids it. Acknowledged (SUCCESS to WeChat) once the payment is settled, either way."""
    payment = db.session.scalars(
        select(OrderPayment).where(OrderPayment.out_trade_no == (fields.get("out_trade_no") or "")[:32])
    ).first()
    if payment is None or not pay.signature_ok(fields, payment.sign_type or ""):
        db.session.rollback()
        log.warning("payment notify: unknown order or bad signature (%r)", (fields.get("out_trade_no") or "")[:64])
        return Outcome(False, "签名错误或订单不存在")
    problem = _mismatch(payment, fields)
    if problem:
        db.session.rollback()
        log.warning("payment notify %s refused: %s", payment.out_trade_no, problem)
        return Outcome(False, problem)
    payment_id = payment.id
    db.session.rollback()
    if fields.get("result_code") != "SUCCESS":
        fail_payment(payment_id, f"微信支付失败：{fields.get('err_code') or ''} {fields.get('err_code_des') or ''}")
        return Outcome(True)
    return settle(payment_id, fields["transaction_id"], via="notify")


def _mismatch(payment: OrderPayment, fields: dict[str, str]) -> str | None:
    if fields.get("return_code") != "SUCCESS":
        return f"return_code={fields.get('return_code')}"
    if fields.get("appid") != payment.appid:
        return "appid 不是下单时的 appid"
    if fields.get("mch_id") != payment.mch_id:
        return "mch_id 不是下单时的商户号"
    if fields.get("result_code") == "SUCCESS":
        if fields.get("total_fee") != str(payment.wechat_fen):
            return f"total_fee {fields.get('total_fee')!r} 不等于微信支付部分 {payment.wechat_fen}"
        if not fields.get("transaction_id"):
            return "缺少 transaction_id"
    return None


def settle(payment_id: int, transaction_id: str, *, via: str) -> Outcome:
    try:
        return _settle(payment_id, transaction_id, via)
    except IntegrityError:
        db.session.rollback()
        log.warning("payment %s: transaction id %s already used", payment_id, transaction_id)
        return Outcome(False, "交易号重复")


@transactional
def _settle(payment_id: int, transaction_id: str, via: str) -> Outcome:
    flipped = db.session.execute(
        update(payment_t)
        .where(payment_t.c.id == payment_id, payment_t.c.status == "pending")
        .values(status="paid", transaction_id=transaction_id, paid_at=utcnow())
    ).rowcount
    payment = db.session.get(OrderPayment, payment_id, populate_existing=True)
    assert payment is not None
    if flipped != 1:
        if payment.status == "paid" and payment.transaction_id == transaction_id:
            return Outcome(True)  # WeChat's retry
        if payment.status == "failed":
            # We closed it at WeChat before voiding, so this needs WeChat to have paid a closed order:
            # keep the money visible to the merchant (to refund by hand) and stop WeChat's retries.
            payment.failure = f"已失败后收到微信支付成功通知，交易号 {transaction_id}，请人工退款"[:255]
            log.warning("payment %s: paid at WeChat after it failed here (%s)", payment_id, transaction_id)
            return Outcome(True)
        return Outcome(False, "订单已用另一笔微信交易支付")
    if payment.hold_entry_id is not None:
        posting = ledger.capture(
            payment.hold_entry_id,
            key=f"payment:{payment_id}:capture",
            operator="wechat_pay",
            store_id=payment.store_id,
            reference=payment.order_no,
            note="订单支付完成（余额部分）",
        )
        payment.capture_entry_id = posting.entry_id
        notices.notify_after_commit(posting, title="余额支付")
    loyalty.on_spend(
        payment.member_id,
        payment.payable_fen,
        payment_key=payment_key(payment_id),
        store_id=payment.store_id,
        reference=payment.order_no,
    )
    log.info(
        "payment %s paid (via %s): %d balance + %d wechat", payment_id, via, payment.balance_fen, payment.wechat_fen
    )
    return Outcome(True)


def pending_payment_ids(now: datetime | None = None) -> list[int]:
    cutoff = (now or utcnow()) - timedelta(seconds=query_after_seconds())
    ids = list(
        db.session.scalars(
            select(payment_t.c.id)
            .where(payment_t.c.status == "pending", payment_t.c.created_at <= cutoff)
            .order_by(payment_t.c.id)
            .limit(500)
        )
    )
    db.session.rollback()
    return ids


def reconcile_payment(payment_id: int, now: datetime | None = None) -> str:
    """Ask WeChat about a pending payment's WeChat part: settle it when paid; when expired, close it at
    WeChat and void the hold. Idempotent: both ends are guarded flips of the payment row."""
    payment = db.session.get(OrderPayment, payment_id, populate_existing=True)
    if payment is None or payment.status != "pending":
        db.session.rollback()
        return "skipped"
    appid, no, st = payment.appid or "", payment.out_trade_no or "", payment.sign_type or "HMAC-SHA256"
    expired = payment.expires_at is not None and payment.expires_at <= (now or utcnow())
    wechat_fen = payment.wechat_fen
    db.session.rollback()
    result = pay.order_query(appid, no, st)
    if result.trade_state == "SUCCESS":
        if result.fields.get("total_fee") != str(wechat_fen) or not result.fields.get("transaction_id"):
            log.warning("payment %s: orderquery answer does not match", payment_id)
            return "anomaly"
        return "paid" if settle(payment_id, result.fields["transaction_id"], via="query").acknowledged else "anomaly"
    if result.trade_state in ("PAYERROR", "CLOSED", "REVOKED"):
        fail_payment(payment_id, f"微信支付未完成（{result.trade_state}）")
        return "failed"
    if not expired or result.trade_state == "USERPAYING":
        return "waiting"
    closed = pay.close_order(appid, no, st) if result.trade_state != "ORDERNOTEXIST" else "missing"
    if closed == "paid":
        return "waiting"  # paid in the meantime: the next query settles it
    fail_payment(payment_id, "微信支付超时未完成，已关闭")
    return "failed"
