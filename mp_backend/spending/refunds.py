"""Refunds of order payments, and WeChat Pay's refund notifications (``/wechat/pay/refund-notify``).

A refund gives back the balance part first, then the WeChat part, never more than each part took:
``order_payment.refunded_balance_fen`` / ``refunded_wechat_fen`` are raised by one guarded ``UPDATE``
(``WHERE refunded + x <= part``) backed by CHECK constraints, in the transaction that records the
refund. The balance share is restored at once through ``ledger.refund`` (to the buckets the payment
took, pro rata: DESIGN §3). The WeChat share goes through WeChat Pay's refund API and stays
``processing`` until WeChat's refund notification says SUCCESS; a refusal or a failed refund gives
the WeChat share back to what may be refunded (its balance share, already restored, stays restored).

A merchant refund is an admin action (permission ``reverse_entry`` in the payment's store, with an
audit row in the same transaction) or a call of ``refund_order_payment`` by the open API.
Idempotency: ``(payment, request_id)`` is UNIQUE; a retry answers with the first refund, and resends a
WeChat refund that got no answer (the same ``out_refund_no``: WeChat refunds it at most once).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, IdempotencyConflict, InvalidAmount, UpstreamError, ValidationFailed
from ..extensions import db
from ..ledger import service as ledger
from ..loyalty import service as loyalty
from ..models_base import utcnow
from ..notices import service as notices
from ..org import service as org
from ..transaction import RetryTransaction, transactional
from ..wechat import refunds as wechat_refunds
from .models import OrderPayment, PaymentRefund
from .payments import PaymentNotFound, _text_id, payment_key

log = logging.getLogger(__name__)

payment_t = OrderPayment.__table__
refund_t = PaymentRefund.__table__
OUT_REFUND_NO_PREFIX = "F"
REFUND_PERMISSION = "reverse_entry"


class RefundExceedsPayment(Conflict):
    code, message = "refund_exceeds_payment", "退款金额超过可退金额"


class PaymentNotPaid(Conflict):
    code, message = "payment_not_paid", "该订单未支付成功，不能退款"


def new_out_refund_no(prefix: str) -> str:
    china = datetime.utcnow() + timedelta(hours=8)  # noqa: DTZ003 (a label, not a stored time)
    return f"{prefix}{china:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"


def refund_notify_url() -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/wechat/pay/refund-notify"


@dataclass(frozen=True)
class RefundResult:
    refund: PaymentRefund
    payment: OrderPayment
    replayed: bool = False


def refund_order_payment(
    payment_id: int,
    amount_fen: object,
    *,
    request_id: object,
    operator: str,
    staff_id: int | None = None,
    reason: str = "",
) -> RefundResult:
    """Refund ``amount_fen`` of a paid order payment: balance part first, then the WeChat part.

    ``staff_id``: a console action (permission and audit row, in the refund's transaction); without
    it the caller (the open API) has checked its client's scope. Raises ``refund_exceeds_payment``
    (409, nothing changed) above what may still be refunded."""
    request_id = _text_id(request_id, "request_id", "请求号")
    if type(amount_fen) is not int or not 0 < amount_fen <= ledger.MAX_AMOUNT_FEN:
        raise InvalidAmount()
    if not isinstance(reason, str) or len(reason) > 255:
        raise ValidationFailed("退款原因最长 255 个字符", code="invalid_reason")
    db.session.rollback()
    refund_id, replayed = _open_refund(payment_id, amount_fen, request_id, operator, staff_id, reason)
    refund = db.session.get(PaymentRefund, refund_id, populate_existing=True)
    assert refund is not None
    if refund.status == "processing" and refund.refund_id is None:
        _send(refund_id)
    refund = db.session.get(PaymentRefund, refund_id, populate_existing=True)
    assert refund is not None
    payment = db.session.get(OrderPayment, refund.payment_id, populate_existing=True)
    assert payment is not None
    return RefundResult(refund, payment, replayed)


@transactional
def _open_refund(
    payment_id: int, amount_fen: int, request_id: str, operator: str, staff_id: int | None, reason: str
) -> tuple[int, bool]:
    # The payment row's lock serialises refunds of one payment: a racing copy of this request is
    # then seen by the lookup below (READ COMMITTED), not refused by the guard as a second refund.
    payment = db.session.get(OrderPayment, payment_id, with_for_update=True) if 0 < payment_id < 2**63 else None
    if payment is None:
        raise PaymentNotFound()
    if staff_id is not None:
        org.require_permission(staff_id, REFUND_PERMISSION, payment.store_id)
    first = db.session.scalars(
        select(PaymentRefund).where(PaymentRefund.payment_id == payment_id, PaymentRefund.request_id == request_id)
    ).first()
    if first is not None:
        if first.amount_fen != amount_fen:
            raise IdempotencyConflict()
        return first.id, True
    if payment.status != "paid":
        raise PaymentNotPaid()
    balance_left = payment.balance_fen - payment.refunded_balance_fen
    wechat_left = payment.wechat_fen - payment.refunded_wechat_fen
    to_balance = min(amount_fen, balance_left)
    to_wechat = amount_fen - to_balance
    if to_wechat > wechat_left:
        raise RefundExceedsPayment(details={"refundable_fen": balance_left + wechat_left})
    # The guard: the database, not this arithmetic, decides whether the refund still fits.
    taken = db.session.execute(
        update(payment_t)
        .where(
            payment_t.c.id == payment_id,
            payment_t.c.refunded_balance_fen + to_balance <= payment_t.c.balance_fen,
            payment_t.c.refunded_wechat_fen + to_wechat <= payment_t.c.wechat_fen,
        )
        .values(
            refunded_balance_fen=payment_t.c.refunded_balance_fen + to_balance,
            refunded_wechat_fen=payment_t.c.refunded_wechat_fen + to_wechat,
        )
    ).rowcount
    if taken != 1:
        raise RefundExceedsPayment()
    now = utcnow()
    refund = PaymentRefund(
        payment_id=payment_id,
        member_id=payment.member_id,
        request_id=request_id,
        amount_fen=amount_fen,
        balance_fen=to_balance,
        wechat_fen=to_wechat,
        out_refund_no=new_out_refund_no(OUT_REFUND_NO_PREFIX) if to_wechat else None,
        status="processing" if to_wechat else "success",
        operator=operator[:64],
        staff_id=staff_id,
        reason=reason,
        failure="",
        created_at=now,
        settled_at=None if to_wechat else now,
    )
    db.session.add(refund)
    try:
        db.session.flush()
    except IntegrityError as error:  # a racing copy of this request committed first
        raise RetryTransaction() from error
    if to_balance:
        paid_entry = payment.debit_entry_id or payment.capture_entry_id
        assert paid_entry is not None
        posting = ledger.refund(
            paid_entry,
            to_balance,
            key=f"payment-refund:{refund.id}:balance",
            operator=operator[:64],
            store_id=payment.store_id,
            reference=payment.order_no,
            note=f"订单退款{('：' + reason) if reason else ''}"[:255],
        )
        refund.refund_entry_id = posting.entry_id
        notices.notify_after_commit(posting, title="订单退款")
        _refund_points(payment, refund.id, "balance", to_balance)
    if staff_id is not None:
        org.audit(staff_id, "payment_refund", f"order_payment:{payment_id}", f"{amount_fen} fen {reason}")
    return refund.id, False


def _send(refund_id: int) -> None:
    refund = db.session.get(PaymentRefund, refund_id, populate_existing=True)
    assert refund is not None and refund.out_refund_no
    payment = db.session.get(OrderPayment, refund.payment_id)
    assert payment is not None
    args = {
        "out_trade_no": payment.out_trade_no or "",
        "out_refund_no": refund.out_refund_no,
        "total_fee": payment.wechat_fen,
        "refund_fee": refund.wechat_fen,
        "notify_url": refund_notify_url(),
        "sign_type": payment.sign_type or "HMAC-SHA256",
        "reason": refund.reason,
    }
    appid = payment.appid or ""
    db.session.rollback()
    answer = wechat_refunds.apply_refund(appid, **args)
    if answer.outcome == "accepted":
        _accepted(refund_id, answer.refund_id)
    elif answer.outcome == "refused":
        _failed(refund_id, f"微信拒绝退款：{answer.message}")
        raise Conflict("微信支付拒绝了退款，余额部分已退回", code="wechat_refund_refused")
    else:
        raise UpstreamError("微信支付暂时无应答，退款处理中，请稍后用同一请求号重试")


@transactional
def _accepted(refund_id: int, wechat_refund_id: str) -> None:
    db.session.execute(
        update(refund_t)
        .where(refund_t.c.id == refund_id, refund_t.c.refund_id.is_(None))
        .values(refund_id=wechat_refund_id[:32] or None)
    )


@transactional
def _failed(refund_id: int, why: str) -> bool:
    """The WeChat share was not refunded: it may be refunded again (released from the counter), once."""
    flipped = db.session.execute(
        update(refund_t)
        .where(refund_t.c.id == refund_id, refund_t.c.status == "processing")
        .values(status="failed", failure=why[:255], settled_at=utcnow())
    ).rowcount
    if flipped != 1:
        return False
    refund = db.session.get(PaymentRefund, refund_id, populate_existing=True)
    assert refund is not None
    db.session.execute(
        update(payment_t)
        .where(payment_t.c.id == refund.payment_id)
        .values(refunded_wechat_fen=payment_t.c.refunded_wechat_fen - refund.wechat_fen)
    )
    return True


@transactional
def _succeeded(refund_id: int, wechat_refund_id: str) -> bool:
    flipped = db.session.execute(
        update(refund_t)
        .where(refund_t.c.id == refund_id, refund_t.c.status == "processing")
        .values(status="success", refund_id=wechat_refund_id[:32], settled_at=utcnow())
    ).rowcount
    if flipped == 1:
        refund = db.session.get(PaymentRefund, refund_id, populate_existing=True)
        assert refund is not None
        _refund_points(db.session.get(OrderPayment, refund.payment_id), refund_id, "wechat", refund.wechat_fen)
    return flipped == 1


def _refund_points(payment: OrderPayment | None, refund_id: int, part: str, amount_fen: int) -> None:
    """A refunded part takes back the points the payment earned and gives back those it redeemed, pro
    rata, once per refund and part (the balance part at once, the WeChat part when WeChat confirms)."""
    assert payment is not None
    loyalty.refund_points(
        payment.member_id,
        payment_key(payment.id),
        refund_key=f"refund:{refund_id}:{part}",
        refund_fen=amount_fen,
        payment_fen=payment.payable_fen,
    )


def refund_dict(refund: PaymentRefund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "request_id": refund.request_id,
        "amount_fen": refund.amount_fen,
        "balance_fen": refund.balance_fen,
        "wechat_fen": refund.wechat_fen,
        "status": refund.status,
        "out_refund_no": refund.out_refund_no,
        "failure": refund.failure,
        "created_at": refund.created_at.isoformat(),
        "settled_at": refund.settled_at.isoformat() if refund.settled_at else None,
    }


# ---------------------------------------------------------------------------------------------------
# WeChat's refund notification (both kinds: order payments F..., recharges Q...)


@dataclass(frozen=True)
class NotifyOutcome:
    acknowledged: bool
    message: str = "OK"


@dataclass(frozen=True)
class NotifiedRefund:
    """What a refund notification is checked against: our refund record and the payment it refunds."""

    id: int
    status: str  # processing, success, failed
    wechat_refund_id: str | None  # WeChat's refund id, once known
    appid: str | None
    out_trade_no: str | None
    refund_fee: int  # what we asked WeChat to refund


# settle(refund id, success, WeChat's refund id, why it failed): once per refund, a no-op after
Settle = Callable[[int, bool, str, str], object]


def handle_refund_notification(body: bytes) -> NotifyOutcome:
    """Decrypt, check against our refund record (appid, mch_id, out_trade_no, refund_fee), settle once.

    Both kinds of refund share this path: order payments (``F...``, here) and recharges (``Q...``,
    ``recharge.refunds``); each kind says how to find its record and how to settle it. A replay (the
    same refund id, already settled) is acknowledged and changes nothing."""
    note = wechat_refunds.parse_refund_notification(body)
    if note is None:
        log.warning("refund notify: not a WeChat refund notification (%d bytes)", len(body or b""))
        return NotifyOutcome(False, "报文无法解密")
    out_refund_no = note.info.get("out_refund_no", "")[:32]
    from ..recharge import refunds as recharge_refunds

    if out_refund_no.startswith(recharge_refunds.OUT_REFUND_NO_PREFIX):
        found, settle = recharge_refunds.notified_refund(out_refund_no), recharge_refunds.settle_notified
    else:
        found, settle = _notified_refund(out_refund_no), _settle_notified
    db.session.rollback()  # the lookups' transaction: settling runs in one of its own
    if found is None:
        return NotifyOutcome(False, "退款单不存在")
    problem = refund_mismatch(note, appid=found.appid, out_trade_no=found.out_trade_no, refund_fee=found.refund_fee)
    if problem:
        log.warning("refund notify %s refused: %s", out_refund_no, problem)
        return NotifyOutcome(False, problem)
    wechat_id = note.info.get("refund_id", "")
    if found.status != "processing":
        return NotifyOutcome(found.wechat_refund_id == wechat_id or found.status == "failed")
    success = note.info.get("refund_status") == "SUCCESS"
    settle(found.id, success, wechat_id, f"微信退款未成功（{note.info.get('refund_status')}）")
    return NotifyOutcome(True)


def _notified_refund(out_refund_no: str) -> NotifiedRefund | None:
    refund = db.session.scalars(select(PaymentRefund).where(PaymentRefund.out_refund_no == out_refund_no)).first()
    if refund is None:
        return None
    payment = db.session.get(OrderPayment, refund.payment_id)
    assert payment is not None
    return NotifiedRefund(
        refund.id, refund.status, refund.refund_id, payment.appid, payment.out_trade_no, refund.wechat_fen
    )


def _settle_notified(refund_id: int, success: bool, wechat_refund_id: str, why: str) -> None:
    if success:
        _succeeded(refund_id, wechat_refund_id)
    else:
        _failed(refund_id, why)


def refund_mismatch(
    note: wechat_refunds.RefundNotification, *, appid: str | None, out_trade_no: str | None, refund_fee: int
) -> str | None:
    if note.appid != appid:
        return "appid 不符"
    if note.mch_id != current_app.config["WECHAT_PAY_MCH_ID"]:
        return "mch_id 不符"
    if note.info.get("out_trade_no") != out_trade_no:
        return "out_trade_no 不符"
    if note.info.get("refund_fee") != str(refund_fee):
        return "refund_fee 不符"
    if not note.info.get("refund_id"):
        return "缺少 refund_id"
    return None
