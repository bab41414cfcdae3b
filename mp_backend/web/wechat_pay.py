"""WeChat Pay's notifications: POST /wechat/pay/notify (API v2 XML)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from ..recharge import service as recharge
from ..wechat import pay

log = logging.getLogger(__name__)
bp = Blueprint("wechat_pay", __name__, url_prefix="/wechat/pay")


@bp.post("/notify")
def notify() -> Response:
    """Acknowledge (SUCCESS) only when the order is, or already was, credited; FAIL makes WeChat retry."""
    if (request.content_length or 0) > pay.MAX_NOTIFICATION_BYTES:
        return Response(pay.fail_xml("报文过大"), status=413, mimetype="text/xml")
    try:
        outcome = recharge.handle_notification(request.get_data(cache=False))
    except Exception:  # WeChat retries on anything but SUCCESS; the order stays pending for the query job
        log.exception("pay notify: failed")
        return Response(pay.fail_xml("处理失败"), status=500, mimetype="text/xml")
    if outcome.acknowledged:
        return Response(pay.SUCCESS_XML, mimetype="text/xml")
    return Response(pay.fail_xml(outcome.message), mimetype="text/xml")
