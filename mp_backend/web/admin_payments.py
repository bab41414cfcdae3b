"""Merchant console: order payments, their refunds, and refunds of WeChat Pay recharges, on the ``admin``
blueprint (/admin/api/...)."""

from __future__ import annotations

from ..recharge import refunds as recharge_refunds
from ..spending import payments, refunds
from .admin import STAFF, blp
from .auth import current_staff
from .payment_schemas import (
    PaymentRefundIn,
    PaymentRefundOut,
    PaymentSchema,
    RechargeRefundIn,
    RechargeRefundSchema,
)
from .schemas import Error


def _errors(view):  # type: ignore[no-untyped-def]
    for status in (400, 401, 403, 404, 409, 502):
        view = blp.alt_response(status, schema=Error)(view)
    return blp.doc(security=STAFF)(view)


@blp.route("/payments/<id:payment_id>", methods=["GET"])
@blp.response(200, PaymentSchema)
@_errors
def payment(payment_id: int) -> dict:
    """One order payment (anyone who may view records)."""
    from ..errors import NotFound
    from ..org.service import store_ids_in_scope
    from ..recharge.service import require_viewer

    staff = require_viewer(current_staff().id)
    found = payments.get_payment_by_id(payment_id)
    scope = store_ids_in_scope(staff)
    if scope is not None and found.store_id not in scope:  # another store's payment: not there, for them
        raise NotFound("支付记录不存在", code="payment_not_found")
    return payments.payment_dict(found, admin=True)


@blp.route("/payments/<id:payment_id>/refunds", methods=["POST"])
@blp.arguments(PaymentRefundIn)
@blp.response(201, PaymentRefundOut)
@_errors
def refund_payment(body: dict, payment_id: int) -> dict:
    """Refund part or all of an order payment: balance part first (restored to its buckets at once),
    then the WeChat part (through WeChat Pay; ``processing`` until WeChat confirms). Never above what
    was paid; the same ``request_id`` again answers with the first refund."""
    staff = current_staff()
    result = refunds.refund_order_payment(
        payment_id,
        body["amount_fen"],
        request_id=body["request_id"],
        operator=f"staff:{staff.id}",
        staff_id=staff.id,
        reason=body.get("reason") or "",
    )
    return {
        "refund": refunds.refund_dict(result.refund),
        "payment": payments.payment_dict(result.payment, admin=True),
        "replayed": result.replayed,
    }


@blp.route("/recharge-orders/<out_trade_no>/refund", methods=["POST"])
@blp.arguments(RechargeRefundIn)
@blp.response(201, RechargeRefundSchema)
@_errors
def refund_recharge(body: dict, out_trade_no: str) -> dict:
    """Refund a WeChat Pay recharge: its principal back through WeChat Pay, less the bonus already spent
    (or refused, by the merchant's policy); the amount taken back is held until WeChat confirms."""
    staff = current_staff()
    refund, replayed = recharge_refunds.refund_recharge(staff.id, out_trade_no, reason=body.get("reason") or "")
    return recharge_refunds.refund_dict(refund) | {"replayed": replayed}
