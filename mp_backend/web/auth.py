"""Who is calling: members (bearer token or the H5 session cookie) and staff (bearer token)."""

from __future__ import annotations

from flask import g, request, session

from ..errors import Unauthorized
from ..members import service as members
from ..members.models import Member
from ..org import service as org
from ..org.models import Staff


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return None


def current_member() -> Member:
    if "member" not in g:
        token = _bearer()
        if token:
            g.member = members.member_from_token(token)
        elif session.get("member_id"):
            g.member = members.get_member(int(session["member_id"]))
        else:
            raise Unauthorized()
    return g.member


def current_staff() -> Staff:
    if "staff" not in g:
        token = _bearer()
        if not token:
            raise Unauthorized("请先登录管理后台")
        g.staff = org.staff_from_token(token)
    return g.staff


def current_member_appid() -> str:
    """The app the member came through, for "which appid pays" (DESIGN.md section 5).

    Bearer tokens are issued by the mini program's login only (/api/auth/wxa-login), the session
    cookie by the official account's OAuth only (/wechat/oauth), so the channel names the app.
    """
    from flask import current_app

    current_member()
    return str(current_app.config["WECHAT_WXA_APPID" if _bearer() else "WECHAT_MP_APPID"])
