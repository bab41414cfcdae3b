"""Refusals that come from talking to WeChat, as AppErrors with stable codes.

Two families:
- calling WeChat (clients.py): an invalid login code is the member's problem (400), a rate limit is
  temporary (429), everything else that goes wrong upstream is ``UpstreamError`` (502);
- WeChat calling us (server.py): a bad signature is 403, a malformed or oversized body is 400 / 413.
  They are AppErrors so that a blueprint which lets them through still answers with the right status.
"""

from __future__ import annotations

from mp_backend.errors import AppError, Forbidden, UpstreamError

__all__ = [
    "BadMessage",
    "BadSignature",
    "MessageTooLarge",
    "SafeModeRequired",
    "StaleRequest",
    "UpstreamError",
    "WeChatCodeInvalid",
    "WeChatLoginBlocked",
    "WeChatRateLimited",
    "WxaCodePageInvalid",
]


class WeChatCodeInvalid(AppError):
    """A wx.login / OAuth / phone-number code WeChat does not accept (40029), or used twice (40163)."""

    status, code, message = 400, "wechat_code_invalid", "微信登录凭证无效或已使用，请重新进入"


class WeChatRateLimited(AppError):
    """WeChat answered 45011 (API minute-quota reached): try again shortly."""

    status, code, message = 429, "wechat_rate_limited", "操作太频繁，请稍后再试"


class WeChatLoginBlocked(AppError):
    """WeChat refuses to log this user in (40226, high-risk user): retrying will not help."""

    status, code, message = 403, "wechat_login_blocked", "微信暂不允许该用户登录"


class WxaCodePageInvalid(UpstreamError):
    """WeChat refused a mini-program code's page (41030): not a page of the published mini program (or
    written with a leading ``/`` or a query). Our configuration, not WeChat's health: retrying will not help."""

    code, message = "wxacode_page_invalid", "小程序页面不存在或小程序尚未发布，请检查 WECHAT_WXA_RECHARGE_PAGE"


class BadSignature(Forbidden):
    """A request on the server URL whose signature does not check out: not from WeChat."""

    code, message = "wechat_bad_signature", "签名校验失败"


class SafeModeRequired(BadSignature):
    """Plain or compatible mode while an EncodingAESKey is configured: their bodies are not signed."""

    code, message = "wechat_safe_mode_required", "请在公众平台将消息加解密方式设为安全模式"


class StaleRequest(BadSignature):
    """Correctly signed, but its timestamp is too far from now: a replay, or a clock far off."""

    code, message = "wechat_stale_request", "请求已过期"


class BadMessage(AppError):
    """A signed request whose body we refuse to read (not XML, DTD/entities, missing fields)."""

    status, code, message = 400, "wechat_bad_message", "消息格式无效"


class MessageTooLarge(BadMessage):
    status, code, message = 413, "wechat_message_too_large", "消息过大"
