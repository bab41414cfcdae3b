"""WeChat Pay's notifications: POST /wechat/pay/notify and /wechat/pay/refund-notify (API v2 XML).

Payment notifications go to the order's owner by its out_trade_no: R... recharges, P... order payments."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from ..recharge import service as recharge
from ..spending import payments, refunds
from ..wechat import pay

log = logging.getLogger(__name__)
bp = Blueprint("wechat_pay", __name__, url_prefix="/wechat/pay")


@bp.post("/notify")
def notify() -> Response:
    """Acknowledge (SUCCESS) only when the order is, or already was, credited; FAIL makes WeChat retry."""
    if (request.content_length or 0) > pay.MAX_NOTIFICATION_BYTES:
        return Response(pay.fail_xml("报文过大"), status=413, mimetype="text/xml")
    try:
        body = request.get_data(cache=False)
        fields = pay.parse_xml(body)
        if fields is not None and payments.is_order_payment(fields.get("out_trade_no") or ""):
            outcome = payments.handle_notification(fields)
        else:
            outcome = recharge.handle_notification(body, fields)
    except Exception:  # WeChat retries on anything but SUCCESS; the order stays pending for the query job
        log.exception("pay notify: failed")
        return Response(pay.fail_xml("处理失败"), status=500, mimetype="text/xml")
    if outcome.acknowledged:
        return Response(pay.SUCCESS_XML, mimetype="text/xml")
    return Response(pay.fail_xml(outcome.message), mimetype="text/xml")


@bp.post("/refund-notify")
def refund_notify() -> Response:
    """Refund results (encrypted ``req_info``): acknowledged once our refund is settled, either way."""
    if (request.content_length or 0) > pay.MAX_NOTIFICATION_BYTES:
        return Response(pay.fail_xml("报文过大"), status=413, mimetype="text/xml")
    try:
        outcome = refunds.handle_refund_notification(request.get_data(cache=False))
    except Exception:  # WeChat retries on anything but SUCCESS
        log.exception("refund notify: failed")
        return Response(pay.fail_xml("处理失败"), status=500, mimetype="text/xml")
    if outcome.acknowledged:
        return Response(pay.SUCCESS_XML, mimetype="text/xml")
    return Response(pay.fail_xml(outcome.message), mimetype="text/xml")
