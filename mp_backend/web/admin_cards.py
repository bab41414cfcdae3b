"""Merchant console: the WeChat member card's notification log (activations and balance/points pushes,
with WeChat's answer), on the ``admin`` blueprint (/admin/api/...)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..errors import Forbidden
from ..members import wechat_card
from ..org import service as org
from ..security import INT_MAX
from .admin import STAFF, blp
from .auth import current_staff
from .schemas import Error


class CardPushQuery(Schema):
    member_id = fields.Integer(validate=validate.Range(1, INT_MAX))
    before_id = fields.Integer(validate=validate.Range(1, 2**63 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class CardPushOut(Schema):
    id = fields.Integer()
    member_id = fields.Integer()
    wechat_card_id = fields.Integer()
    action = fields.String(metadata={"description": "activate or update"})
    seq = fields.Integer(metadata={"description": "the ledger change count the values belong to"})
    balance_fen = fields.Integer()
    points = fields.Integer()
    status = fields.String(metadata={"description": "sent or failed"})
    errcode = fields.Integer(allow_none=True)
    detail = fields.String()
    created_at = fields.DateTime()


class CardPushList(Schema):
    items = fields.List(fields.Nested(CardPushOut), required=True)
    next_before_id = fields.Integer(allow_none=True)


@blp.route("/wechat-card/pushes", methods=["GET"])
@blp.arguments(CardPushQuery, location="query")
@blp.response(200, CardPushList)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.doc(security=STAFF)
def card_push_log(query: dict) -> dict:
    """What was sent to members' WeChat cards (activation, balance and points), when, and WeChat's
    answer; newest first."""
    staff = current_staff()
    if "view_records" not in org.PERMISSIONS[staff.role]:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    rows = wechat_card.push_log(**query)
    return {"items": rows, "next_before_id": rows[-1].id if rows else None}
