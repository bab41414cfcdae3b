"""Members' API (mini program and H5): /api/..."""

from __future__ import annotations

from flask import current_app

from ..members import service as members
from ..members.summary import summarize
from ..wechat import clients as wechat_clients
from .auth import current_member
from .schemas import Blueprint, Error, MemberSchema, PhoneBindIn, WxaLoginIn, WxaLoginOut

blp = Blueprint("member", __name__, url_prefix="/api", description="Members: mini program and H5 pages")


@blp.route("/auth/wxa-login", methods=["POST"])
@blp.arguments(WxaLoginIn)
@blp.response(200, WxaLoginOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(502, schema=Error)
def wxa_login(body: dict) -> dict:
    """Mini-program login: exchange wx.login()'s code for a member token."""
    session = wechat_clients.jscode2session(body["code"])
    login = members.login_with_openid(current_app.config["WECHAT_WXA_APPID"], session["openid"], session.get("unionid"))
    return {
        "token": members.issue_member_token(login.member),
        "member": summarize(login.member).as_dict(),
        "created": login.created,
    }


@blp.route("/me", methods=["GET"])
@blp.response(200, MemberSchema)
@blp.alt_response(401, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=[{"memberToken": []}])
def me() -> dict:
    """The member, card and level, balance by bucket, and points."""
    return summarize(current_member()).as_dict()


@blp.route("/me/phone", methods=["POST"])
@blp.arguments(PhoneBindIn)
@blp.response(200, MemberSchema)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=[{"memberToken": []}])
def bind_phone(body: dict) -> dict:
    """Bind the phone number the member shared through getPhoneNumber (its one-time code)."""
    member = current_member()
    phone = wechat_clients.get_phone_number(body["code"])
    return summarize(members.bind_phone(member.id, phone["pure_phone_number"])).as_dict()


from . import member_recharge  # noqa: E402,F401,I001  (recharge routes on this blueprint)
from . import member_payments  # noqa: E402,F401,I001  (payment and pay-password routes on this blueprint)
from . import member_records  # noqa: E402,F401,I001  (the member's own ledger records)
from .member_paycode import pay_code  # noqa: E402,F401,I001  (the payment code, on this blueprint)
from . import member_points  # noqa: E402,F401,I001  (points and exchange)
from . import member_card  # noqa: E402,F401,I001  (member-card activation)
