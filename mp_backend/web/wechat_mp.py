"""The official account: its server URL (/wechat/mp) and OAuth login for H5 pages (/wechat/oauth)."""

from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, redirect, request, session

from ..errors import AppError, ValidationFailed
from ..members import service as members
from ..members.mp_events import Incoming, answer
from ..wechat import clients as wechat_clients
from ..wechat import server as wechat_server
from ..wechat.state import current_state

log = logging.getLogger(__name__)
bp = Blueprint("wechat_mp", __name__, url_prefix="/wechat")

DEFAULT_NEXT = "/static/member.html"


@bp.get("/mp")
def verify() -> Response:
    """WeChat's check of the server URL: echo ``echostr`` once the signature holds."""
    return Response(wechat_server.verify_url(request.args), mimetype="text/plain")


@bp.post("/mp")
def receive() -> Response:
    """Messages and events (safe mode; plain mode without an AES key). Answered within WeChat's 5 s."""
    # Refused by its declared length before a byte is read (413), like every body but smaller.
    request.max_content_length = min(
        wechat_server.MAX_BODY_BYTES, current_app.config.get("MAX_CONTENT_LENGTH") or wechat_server.MAX_BODY_BYTES
    )
    inbound = wechat_server.parse_message(
        request.get_data(cache=False),
        request.args,
        remote_addr=request.remote_addr,
        seen_once=current_state().seen_once,
    )
    if inbound.repeat:  # WeChat's retry or a replay: it was (or is being) answered once already
        return Response(wechat_server.EMPTY_REPLY, mimetype="text/plain")
    try:
        text = answer(_incoming(inbound.message))
    except AppError as error:
        log.warning("wechat mp: %s for %s", error, inbound.openid)
        text = None
    except Exception:  # WeChat shows the member "service unavailable" on anything but a reply
        log.exception("wechat mp: handler failed for %s", inbound.openid)
        text = None
    body = inbound.reply(text)
    return Response(body, mimetype="text/plain" if body == "success" else "application/xml")


def _incoming(message) -> Incoming:  # type: ignore[no-untyped-def]
    event = (getattr(message, "event", "") or "").lower()
    key = getattr(message, "key", "") or ""
    if event == "subscribe_scan":  # wechatpy's name for a subscribe through a parametric QR code
        event, key = "subscribe", f"qrscene_{getattr(message, 'scene_id', '')}"
    elif event == "scan":
        key = str(getattr(message, "scene_id", "") or key)
    return Incoming(
        openid=str(message.source),
        msg_type=message.type,
        event=event,
        event_key=str(key),
        content=str(getattr(message, "content", "") or ""),
        card_id=str(getattr(message, "card_id", "") or ""),
        card_code=str(getattr(message, "code", "") or getattr(message, "card_code", "") or ""),
    )


MAX_NEXT_LENGTH = 512
_UNSAFE_NEXT = re.compile(r"[\x00-\x1f\x7f\\]|//")  # control characters (CR/LF: header injection), \, //


def _safe_next(target: str | None) -> str:
    """Only this site's own paths: no scheme, no host, no protocol-relative //evil.example, and nothing
    that could split the Location header or be read as another host (CR, LF, backslash, //)."""
    if not target:
        return DEFAULT_NEXT
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or len(target) > MAX_NEXT_LENGTH
        or _UNSAFE_NEXT.search(target)
    ):
        raise ValidationFailed("登录后只能返回本站页面", code="invalid_next")
    return target


@bp.get("/oauth")
def oauth_start():  # type: ignore[no-untyped-def]
    """Send the member to WeChat's authorize page; ``scope=snsapi_userinfo`` for name and avatar."""
    next_path = _safe_next(request.args.get("next"))
    scope = request.args.get("scope", "snsapi_base")
    if scope not in ("snsapi_base", "snsapi_userinfo"):
        raise ValidationFailed("scope 只能是 snsapi_base 或 snsapi_userinfo", code="invalid_scope")
    state = secrets.token_urlsafe(12)
    session["oauth"] = {"state": state, "next": next_path, "scope": scope}
    callback = f"{current_app.config['PUBLIC_BASE_URL']}/wechat/oauth/callback"
    return redirect(wechat_clients.oauth_client(callback, scope, state).authorize_url)


@bp.get("/oauth/callback")
def oauth_callback():  # type: ignore[no-untyped-def]
    pending = session.pop("oauth", None)
    code = request.args.get("code")
    state = str(request.args.get("state", "")).encode("utf-8", "replace")
    if not isinstance(pending, dict) or not secrets.compare_digest(state, str(pending.get("state")).encode()):
        raise ValidationFailed("登录请求已失效，请重新打开页面", code="oauth_state_invalid")
    if not code:
        raise ValidationFailed("未获得微信授权", code="oauth_denied")
    callback = f"{current_app.config['PUBLIC_BASE_URL']}/wechat/oauth/callback"
    oauth = wechat_clients.oauth_client(callback, pending["scope"], pending["state"])
    with wechat_clients.translate_errors("oauth"):
        token = oauth.fetch_access_token(code)
        profile = oauth.get_user_info() if pending["scope"] == "snsapi_userinfo" else {}
    login = members.login_with_openid(current_app.config["WECHAT_MP_APPID"], token["openid"], token.get("unionid"))
    if profile.get("nickname") and not login.member.name:
        members.update_profile(login.member.id, name=profile["nickname"])
    session.clear()
    session.permanent = True  # expires with PERMANENT_SESSION_LIFETIME, no later than a member token
    session["member_id"] = login.member.id
    try:
        next_path = _safe_next(pending.get("next"))
    except ValidationFailed:  # kept from before this check existed: land on the member centre
        next_path = DEFAULT_NEXT
    return redirect(next_path)
