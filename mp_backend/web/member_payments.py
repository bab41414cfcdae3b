"""Members pay orders with balance (and WeChat Pay for the rest), and keep a pay password: on the
``member`` blueprint (/api/payments, /api/me/pay-password)."""

from __future__ import annotations

from flask import current_app, request

from ..extensions import db
from ..spending import password as pay_password
from ..spending import payments
from .auth import current_member, current_member_appid
from .member import blp
from .payment_schemas import (
    PaymentIn,
    PaymentSchema,
    PayPasswordChangeIn,
    PayPasswordResetIn,
    PayPasswordSetIn,
    PayPasswordStatus,
)
from .schemas import Error

MEMBER = [{"memberToken": []}]


def _errors(*statuses: int):  # type: ignore[no-untyped-def]
    def decorate(view):  # type: ignore[no-untyped-def]
        for status in statuses:
            view = blp.alt_response(status, schema=Error)(view)
        return blp.doc(security=MEMBER)(view)

    return decorate


@blp.route("/me/pay-password", methods=["GET"])
@blp.response(200, PayPasswordStatus)
@_errors(401)
def pay_password_status() -> dict:
    """Whether the member has set a pay password."""
    return {"is_set": pay_password.has_password(current_member().id)}


@blp.route("/me/pay-password", methods=["POST"])
@blp.arguments(PayPasswordSetIn)
@blp.response(201, PayPasswordStatus)
@_errors(400, 401, 409)
def set_pay_password(body: dict) -> dict:
    """Set the first pay password (6 digits)."""
    pay_password.set_password(current_member().id, body["pay_password"])
    return {"is_set": True}


@blp.route("/me/pay-password", methods=["PUT"])
@blp.arguments(PayPasswordChangeIn)
@blp.response(200, PayPasswordStatus)
@_errors(400, 401, 403, 409, 423)
def change_pay_password(body: dict) -> dict:
    """Change the pay password with the old one (a wrong old one counts as a wrong try)."""
    pay_password.change_password(current_member().id, body["old_pay_password"], body["new_pay_password"])
    return {"is_set": True}


@blp.route("/me/pay-password/reset", methods=["POST"])
@blp.arguments(PayPasswordResetIn)
@blp.response(200, PayPasswordStatus)
@_errors(400, 401, 403, 502)
def reset_pay_password(body: dict) -> dict:
    """Forgotten pay password: re-verify with a fresh ``wx.login()`` code, set a new one, lift a lock."""
    pay_password.reset_password(current_member().id, body["code"], body["new_pay_password"])
    return {"is_set": True}


@blp.route("/payments", methods=["POST"])
@blp.arguments(PaymentIn)
@blp.response(201, PaymentSchema)
@_errors(400, 401, 403, 404, 409, 423, 502)
def create_payment(body: dict) -> dict:
    """Pay an order: from balance when it covers the (discounted) amount; otherwise the balance is held
    and WeChat Pay parameters are returned for the rest. The same ``request_id`` again answers with the
    first payment. Wrong password: 403 ``wrong_pay_password`` (``remaining_tries``); locked: 423
    ``pay_password_locked`` (``locked_until``)."""
    member = current_member()
    result = payments.pay_order(
        member.id,
        current_member_appid(),
        order_no=body["order_no"],
        amount_fen=body["amount_fen"],
        pay_password_text=body["pay_password"],
        request_id=body["request_id"],
        store_code=body.get("store"),
        client_ip=request.remote_addr or "",
        points_count=body["points"],
    )
    answer = payments.payment_dict(result.payment)
    answer["replayed"] = result.replayed
    if result.pay_params:
        answer["pay_params"] = result.pay_params
        if current_app.config.get("WECHAT_SANDBOX"):
            prepay = result.pay_params["package"].removeprefix("prepay_id=")
            answer["sandbox_pay_url"] = f"/sandbox/wechatpay/sandbox/pay?prepay_id={prepay}"
    db.session.rollback()
    return answer


@blp.route("/payments/<order_no>", methods=["GET"])
@blp.response(200, PaymentSchema)
@_errors(401, 404)
def payment_status(order_no: str) -> dict:
    """One of the member's payments, by the merchant's order number."""
    return payments.payment_dict(payments.get_payment(current_member().id, order_no))
