"""Merchant console API: /admin/api/... (staff token, role and store scope)."""

from __future__ import annotations

from ..errors import Forbidden
from ..members import service as members
from ..members.summary import summarize
from ..org import service as org
from .auth import current_staff
from .schemas import (
    Blueprint,
    Error,
    MemberSchema,
    MemberStatusIn,
    PostingSchema,
    ReversalIn,
    StaffLoginIn,
    StaffSchema,
    TokenOut,
    WithdrawalIn,
    posting_dict,
)

blp = Blueprint("admin", __name__, url_prefix="/admin/api", description="Merchant console")
STAFF = [{"staffToken": []}]


@blp.route("/auth/login", methods=["POST"])
@blp.arguments(StaffLoginIn)
@blp.response(200, TokenOut)
@blp.alt_response(401, schema=Error)
def login(body: dict) -> dict:
    """Staff login: a bearer token for the console."""
    return {"token": org.authenticate(body["username"], body["password"])}


@blp.route("/me", methods=["GET"])
@blp.response(200, StaffSchema)
@blp.alt_response(401, schema=Error)
@blp.doc(security=STAFF)
def me():  # type: ignore[no-untyped-def]
    """The staff member: role, the stores they see (``stores``), their region and permissions."""
    from ..org.manage import staff_dict

    return staff_dict(current_staff())


@blp.route("/members/<id:member_id>", methods=["GET"])
@blp.response(200, MemberSchema)
@blp.alt_response(404, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=STAFF)
def member_detail(member_id: int) -> dict:
    staff = current_staff()
    if "view_records" not in org.PERMISSIONS[staff.role]:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    body = summarize(members.get_member(member_id)).as_dict()
    from ..reports.lists import mask_phone, masks_phones

    if masks_phones(staff):  # as in the member list and exports: a clerk sees phones masked
        body["phone"] = mask_phone(body.get("phone"))
    return body


@blp.route("/members/<id:member_id>/status", methods=["POST"])
@blp.arguments(MemberStatusIn)
@blp.response(200, MemberSchema)
@blp.alt_response(403, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=STAFF)
def member_status(body: dict, member_id: int) -> dict:
    """Freeze, report lost, or reactivate a member's card (reason required, audited)."""
    member = members.set_status(
        member_id, body["status"], staff_id=current_staff().id, reason=body["reason"], store_id=body.get("store_id")
    )
    return summarize(member).as_dict()


@blp.route("/members/<id:member_id>/withdrawals", methods=["POST"])
@blp.arguments(WithdrawalIn)
@blp.response(201, PostingSchema)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=STAFF)
def withdraw(body: dict, member_id: int) -> dict:
    """Record principal handed back outside the system (members cannot withdraw by themselves)."""
    staff = current_staff()
    posting = members.withdraw_offline(
        member_id,
        body["amount_fen"],
        key=f"admin:withdraw:{body['request_id']}",
        staff_id=staff.id,
        reason=body["reason"],
        store_id=body.get("store_id"),
    )
    return posting_dict(posting)


@blp.route("/ledger/<big_id:entry_id>/reversal", methods=["POST"])
@blp.arguments(ReversalIn)
@blp.response(201, PostingSchema)
@blp.alt_response(403, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=STAFF)
def reverse(body: dict, entry_id: int) -> dict:
    """Correct a mistaken credit with a reversing entry."""
    staff = current_staff()
    posting = members.reverse_credit(
        entry_id,
        key=f"admin:reverse:{body['request_id']}",
        staff_id=staff.id,
        reason=body["reason"],
        store_id=body.get("store_id"),
    )
    return posting_dict(posting)


from . import admin_recharge  # noqa: E402,F401,I001  (recharge routes on this blueprint)
from . import admin_payments  # noqa: E402,F401,I001  (payment and refund routes on this blueprint)
from . import admin_ops  # noqa: E402,F401,I001  (offline and batch recharges, ledger records)
from . import admin_points  # noqa: E402,F401,I001  (card types, levels, points)
from . import admin_cards  # noqa: E402,F401,I001  (the WeChat member card log)
from . import admin_console  # noqa: E402,F401,I001  (overview, lists, staff and stores, audit, exports)
