"""Member-card activation, on the ``member`` blueprint: /api/me/activate (mini program and H5)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..members import activation
from ..members.summary import summarize
from .auth import current_member
from .member import blp
from .schemas import Error, MemberSchema


class ActivateIn(Schema):
    # Plain strings, checked by the service: a wrong value gets its own code (invalid_phone, ...).
    phone = fields.String(required=True, validate=validate.Length(max=32))
    name = fields.String(required=True, validate=validate.Length(max=64))
    birthday = fields.String(required=True, validate=validate.Length(max=16), metadata={"example": "1990-05-17"})


class ActivateOut(Schema):
    member = fields.Nested(MemberSchema, required=True)
    card_no = fields.String(required=True)
    birthday = fields.Date(required=True)
    activated_at = fields.DateTime(required=True)
    replayed = fields.Boolean(required=True)


@blp.route("/me/activate", methods=["POST"])
@blp.arguments(ActivateIn)
@blp.response(200, ActivateOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=[{"memberToken": []}])
def activate(body: dict) -> dict:
    """Activate the member card: phone, name, birthday; answers the card number. The same details
    again answer the same (``replayed``); ``409 phone_taken`` when the phone is another member's,
    ``409 already_activated`` for other details on an activated card."""
    done = activation.activate(current_member().id, phone=body["phone"], name=body["name"], birthday=body["birthday"])
    member = done.member
    return {
        "member": summarize(member).as_dict(),
        "card_no": member.card_no,
        "birthday": member.birthday,
        "activated_at": member.activated_at,
        "replayed": done.replayed,
    }
