"""WeChat Pay API v2 for recharges: unified order (JSAPI), orderquery, closeorder, and the check of a
payment notification's signature.

wechatpy's ``parse_payment_result`` checks MD5 signatures only, and WeChat leaves ``sign_type`` out of
HMAC-SHA256 notifications, so the verifier here takes the sign type the order was placed with and uses
wechatpy's own signing helpers. It only says whether WeChat signed the fields: checking them against
the order (appid, mch_id, amount) is the recharge service's job.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml

from .clients import pay_client, translate_errors
from .errors import UpstreamError
from .state import current_state

log = logging.getLogger(__name__)

SIGN_TYPES = ("MD5", "HMAC-SHA256")
MAX_NOTIFICATION_BYTES = 16 * 1024
SUCCESS_XML = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"


def fail_xml(message: str) -> str:
    return str(dict_to_xml({"return_code": "FAIL", "return_msg": message}))


def parse_xml(body: bytes | str) -> dict[str, str] | None:
    """A flat ``<xml>`` document as a dict (defusedxml: no entities, no DTD); None if it is not one."""
    if not body or len(body) > MAX_NOTIFICATION_BYTES:
        return None
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        return None
    if root.tag != "xml" or any(len(child) for child in root):
        return None
    return {child.tag: (child.text or "") for child in root}


def sign(fields: dict[str, Any], sign_type: str, api_key: str | None = None) -> str:
    key = api_key if api_key is not None else current_state().settings.pay_api_key
    data = {k: v for k, v in fields.items() if k != "sign"}
    if sign_type == "HMAC-SHA256":
        return str(calculate_signature_hmac(data, key))
    return str(calculate_signature(data, key))


def signature_ok(fields: dict[str, str], sign_type: str, api_key: str | None = None) -> bool:
    """True when ``fields`` carry WeChat's signature of type ``sign_type`` (our order's, not theirs)."""
    given = fields.get("sign") or ""
    if sign_type not in SIGN_TYPES or not given:
        return False
    declared = fields.get("sign_type")
    if declared and declared != sign_type:
        return False
    # Bytes, not str: compare_digest refuses non-ASCII str, and a forged sign may be anything.
    return hmac.compare_digest(given.upper().encode("utf-8", "replace"), sign(fields, sign_type, api_key).encode())


def without_sign(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k != "sign"}


@dataclass(frozen=True)
class Prepay:
    prepay_id: str
    pay_params: dict[str, str]


def unified_order(
    *,
    appid: str,
    openid: str,
    out_trade_no: str,
    total_fee: int,
    body: str,
    notify_url: str,
    client_ip: str,
    sign_type: str,
    expire_seconds: int,
    attach: str | None = None,
) -> Prepay:
    """JSAPI unified order for a member of app ``appid``; the parameters for ``WeixinJSBridge`` /
    ``wx.requestPayment``, signed with the order's sign type (wechatpy's helper signs MD5 only)."""
    client = pay_client(appid)
    now = time.time()
    with translate_errors("unifiedorder"):
        try:
            result = client.order.create(
                trade_type="JSAPI",
                body=body,
                total_fee=total_fee,
                notify_url=notify_url,
                client_ip=client_ip or "127.0.0.1",
                user_id=openid,
                out_trade_no=out_trade_no,
                attach=attach,
                sign_type=sign_type,
                time_expire=_china_time(now + expire_seconds),
            )
        except WeChatPayException as error:
            log.warning("unifiedorder %s refused: %s %s", out_trade_no, error.errcode, error.errmsg)
            raise UpstreamError() from error
    _require_signed_answer(result, sign_type, "unifiedorder")
    prepay_id = str(result.get("prepay_id") or "")
    if not prepay_id:
        raise UpstreamError()
    params = {
        "appId": appid,
        "timeStamp": str(int(now)),
        "nonceStr": secrets.token_hex(16),
        "package": f"prepay_id={prepay_id}",
        "signType": sign_type,
    }
    params["paySign"] = sign(params, sign_type)
    return Prepay(prepay_id, params)


@dataclass(frozen=True)
class QueryResult:
    trade_state: str  # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, ... or ORDERNOTEXIST
    fields: dict[str, str]


def order_query(appid: str, out_trade_no: str, sign_type: str) -> QueryResult:
    client = pay_client(appid)
    try:
        result = client.post(
            "pay/orderquery", data={"appid": appid, "out_trade_no": out_trade_no, "sign_type": sign_type}
        )
    except WeChatPayException as error:
        if error.errcode == "ORDERNOTEXIST":
            return QueryResult("ORDERNOTEXIST", {})
        log.warning("orderquery %s failed: %s %s", out_trade_no, error.errcode, error.errmsg)
        raise UpstreamError() from error
    fields = _require_signed_answer(result, sign_type, "orderquery")
    return QueryResult(str(fields.get("trade_state") or ""), fields)


def close_order(appid: str, out_trade_no: str, sign_type: str) -> str:
    """Close an unpaid order at WeChat. Returns ``closed``, ``paid`` (too late: the member paid) or
    ``missing`` (WeChat never saw it)."""
    client = pay_client(appid)
    try:
        result = client.post(
            "pay/closeorder", data={"appid": appid, "out_trade_no": out_trade_no, "sign_type": sign_type}
        )
    except WeChatPayException as error:
        if error.errcode == "ORDERPAID":
            return "paid"
        if error.errcode == "ORDERNOTEXIST":
            return "missing"
        if error.errcode == "ORDERCLOSED":
            return "closed"
        log.warning("closeorder %s failed: %s %s", out_trade_no, error.errcode, error.errmsg)
        raise UpstreamError() from error
    _require_signed_answer(result, sign_type, "closeorder")
    return "closed"


def _require_signed_answer(result: Any, sign_type: str, what: str) -> dict[str, str]:
    """wechatpy does not check the signature of WeChat's answers; a payment decision rests on them."""
    if not isinstance(result, dict):
        raise UpstreamError()
    fields = {str(k): "" if v is None else str(v) for k, v in result.items()}
    if not signature_ok(fields, sign_type):
        log.warning("%s: answer with a bad signature refused", what)
        raise UpstreamError()
    return fields


def _china_time(epoch: float) -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.fromtimestamp(epoch, tz=timezone(timedelta(hours=8)))
