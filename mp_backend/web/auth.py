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
