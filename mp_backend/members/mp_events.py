"""What the official account answers: the member-side meaning of WeChat messages and events.

The blueprint verifies and decrypts; this module decides. It returns the reply text, or None for
WeChat's empty ``success`` (no reply).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app

from ..errors import AppError
from ..wechat import mp_client, translate_errors
from . import service as members
from . import wechat_card
from .summary import balance_reply_text, summarize

log = logging.getLogger(__name__)

CARD_EVENTS = frozenset(wechat_card.CARD_EVENTS)
BALANCE_KEY = "MY_BALANCE"
BALANCE_WORDS = {"余额", "查余额", "我的余额"}


@dataclass(frozen=True)
class Incoming:
    openid: str
    msg_type: str  # text, event, image, ...
    event: str = ""  # subscribe, unsubscribe, click, view, scan (lower case)
    event_key: str = ""
    content: str = ""
    card_id: str = ""  # card events (user_get_card, submit_membercard_user_info): CardId, UserCardCode
    card_code: str = ""


def _links() -> tuple[str, str]:
    base = current_app.config["PUBLIC_BASE_URL"]
    return f"{base}/member", f"{base}/r"


def answer(incoming: Incoming) -> str | None:
    appid = current_app.config["WECHAT_MP_APPID"]
    if incoming.msg_type == "event":
        event = incoming.event.lower()
        if event == "subscribe":
            login = _login(appid, incoming.openid, subscribed=True)
            scene = incoming.event_key.removeprefix("qrscene_") if incoming.event_key else ""
            if scene:
                log.info("subscribe via parametric QR scene %s (member %s)", scene, login.member.id)
            centre, recharge = _links()
            return (
                f"欢迎加入会员！\n会员中心：{centre}\n在线充值：{recharge}\n"
                f"点击菜单“我的余额”或回复“余额”随时查看余额。"
            )
        if event == "unsubscribe":
            members.set_subscribed(appid, incoming.openid, False)  # keep the member and the money
            return None
        if event == "click" and incoming.event_key == BALANCE_KEY:
            return _balance(appid, incoming.openid)
        if event in CARD_EVENTS:
            if wechat_card.refusal(event, incoming.openid, incoming.card_id, incoming.card_code):
                return None
            member = _login(appid, incoming.openid).member
            done = wechat_card.on_event(event, member.id, incoming.openid, incoming.card_id, incoming.card_code)
            log.info("wechat card event %s from %s: %s", event, incoming.openid, done)
            return None
        if event == "scan":
            log.info("scan of parametric QR %s by a follower", incoming.event_key)
            return None
        return None  # view and anything unknown: WeChat only wants "success"
    if incoming.msg_type == "text" and incoming.content.strip() in BALANCE_WORDS:
        return _balance(appid, incoming.openid)
    return None


def _login(appid: str, openid: str, *, subscribed: bool | None = None) -> members.Login:
    """The member behind a follower. Messages carry no unionid: for a follower we do not know yet, ask
    WeChat (user/info), so that someone who came through the mini program is found, not created again
    (DESIGN §5: unionid first)."""
    unionid = None if members.find_by_openid(appid, openid) else _unionid_of(openid)
    return members.login_with_openid(appid, openid, unionid, subscribed=subscribed)


def _unionid_of(openid: str) -> str | None:
    try:
        with translate_errors("user info"):
            info = mp_client().user.get(openid)
    except AppError:  # WeChat unavailable: answer now as a new member; the unionid links them later
        return None
    unionid = info.get("unionid") if isinstance(info, dict) else None
    return unionid if isinstance(unionid, str) and 0 < len(unionid) <= 64 else None


def _balance(appid: str, openid: str) -> str:
    member = _login(appid, openid).member
    centre, _recharge = _links()
    return balance_reply_text(summarize(member), centre)
