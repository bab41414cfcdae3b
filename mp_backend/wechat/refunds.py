"""WeChat Pay API v2 refunds: apply (``secapi/pay/refund``) and the refund notification's ``req_info``.

The refund API needs the merchant's API client certificate in production (``WECHAT_PAY_CERT_PATH`` and
``WECHAT_PAY_KEY_PATH``, handed to wechatpy by ``clients.pay_client``); the sandbox's fake WeChat
cannot see TLS and does without. A refund notification carries no signature: its ``req_info`` is
AES-256-ECB encrypted with the lowercase hex md5 of the API key, which only WeChat and we know, so a
``req_info`` that decrypts to a well-formed document is WeChat's. This module says what WeChat said;
checking it against our refund record is the caller's job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from wechatpy.crypto import RefundCrypto
from wechatpy.exceptions import WeChatPayException

from . import pay
from .clients import pay_client
from .state import current_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefundAnswer:
    """``accepted``: WeChat took the refund (it completes later; the notification says how);
    ``refused``: WeChat refused it for good (nothing refunded); ``unknown``: no answer (network,
    HTTP 5xx): resending the same ``out_refund_no`` is safe, WeChat refunds it at most once."""

    outcome: str
    refund_id: str = ""
    message: str = ""


def apply_refund(
    appid: str,
    *,
    out_trade_no: str,
    out_refund_no: str,
    total_fee: int,
    refund_fee: int,
    notify_url: str,
    sign_type: str,
    reason: str = "",
) -> RefundAnswer:
    client = pay_client(appid)
    data = {
        "appid": appid,
        "out_trade_no": out_trade_no,
        "out_refund_no": out_refund_no,
        "total_fee": total_fee,
        "refund_fee": refund_fee,
        "refund_fee_type": "CNY",
        "notify_url": notify_url,
        "sign_type": sign_type,
        "refund_desc": reason[:80] or None,
    }
    try:
        result = client.post("secapi/pay/refund", data=data)
    except WeChatPayException as error:
        if error.return_code is None:
            log.warning("refund %s: no answer from WeChat: %s", out_refund_no, error.return_msg)
            return RefundAnswer("unknown", message="微信支付暂时无应答")
        log.warning("refund %s refused: %s %s %s", out_refund_no, error.return_code, error.errcode, error.errmsg)
        return RefundAnswer("refused", message=f"{error.errcode or error.return_code}: {error.errmsg or ''}"[:200])
    if not isinstance(result, dict):
        return RefundAnswer("unknown", message="微信支付应答无法解析")
    fields = {str(k): "" if v is None else str(v) for k, v in result.items()}
    if not pay.signature_ok(fields, sign_type):
        log.warning("refund %s: answer with a bad signature ignored", out_refund_no)
        return RefundAnswer("unknown", message="微信支付应答签名错误")
    return RefundAnswer("accepted", refund_id=fields.get("refund_id", ""))


@dataclass(frozen=True)
class RefundNotification:
    appid: str
    mch_id: str
    info: dict[str, str]  # the decrypted req_info: out_refund_no, refund_id, refund_status, refund_fee ...


def parse_refund_notification(body: bytes) -> RefundNotification | None:
    """The notification's outer fields and its decrypted ``req_info``; None when it is not WeChat's
    (not XML, return_code not SUCCESS, or a ``req_info`` our key does not decrypt)."""
    outer = pay.parse_xml(body)
    if outer is None or outer.get("return_code") != "SUCCESS" or not outer.get("req_info"):
        return None
    key = hashlib.md5(current_state().settings.pay_api_key.encode()).hexdigest().encode()
    try:
        raw = base64.b64decode(outer["req_info"], validate=True)
        if not raw or len(raw) % 16:
            return None
        plain = RefundCrypto(key).decrypt(outer["req_info"])
        root = SafeET.fromstring(plain, forbid_dtd=True)
    except (binascii.Error, ValueError, ParseError, DefusedXmlException, IndexError, TypeError):
        return None
    if root.tag != "root" or any(len(child) for child in root):
        return None
    info = {child.tag: (child.text or "") for child in root}
    return RefundNotification(outer.get("appid", ""), outer.get("mch_id", ""), info)
