"""Schemas of the open API (/open/api/v1): they validate the till's requests and document them."""

from __future__ import annotations

import json
from typing import Any

from flask import Request
from marshmallow import Schema, fields, validate

from ..security import BIGINT_MAX
from .schemas import AMOUNT_MAX_FEN, BalanceSchema, StrictAmount


def _text(max_length: int, **kwargs) -> fields.String:  # type: ignore[no-untyped-def]
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


class MemberRef(Schema):
    """Exactly one of them: the card number, the phone number, or the member's payment code."""

    card_no = _text(20)
    phone = _text(20)
    pay_code = fields.String(validate=validate.Regexp(r"^[0-9]{18}$"), metadata={"description": "18 digits"})


class MemberQuery(MemberRef):
    pass


class TakeIn(Schema):
    member = fields.Nested(MemberRef, required=True)
    amount_fen = StrictAmount(required=True, metadata={"description": "what the till charges, after its own pricing"})
    order_no = _text(64, required=True, metadata={"description": "the merchant's order number, unique per client"})
    store_code = _text(32, required=True)


_TAKE_KEYS = frozenset(("member", "amount_fen", "order_no", "store_code"))
_FAST_BODY_MAX = 2048  # bytes: a plain charge is about 120


def _plain(value: Any, max_length: int) -> bool:
    return type(value) is str and 0 < len(value) <= max_length and value.isascii() and value.isprintable()


def take_in_fast(req: Request) -> dict[str, Any] | None:
    """``TakeIn``'s body for a plainly valid charge or hold (the till's every request): a JSON object with
    exactly the four fields, one member identifier, printable ASCII texts within their lengths, an integer
    amount in range. None for anything else, which ``TakeIn`` loads or refuses with its usual errors
    (``Blueprint.arguments(fast=...)``)."""
    if req.mimetype != "application/json":
        return None
    data = req.get_data(cache=True)
    if len(data) > _FAST_BODY_MAX:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:  # also UnicodeDecodeError
        return None
    if type(value) is not dict or value.keys() != _TAKE_KEYS:
        return None
    member, amount = value["member"], value["amount_fen"]
    if type(member) is not dict or len(member) != 1:
        return None
    ((kind, ident),) = member.items()
    if kind == "pay_code":
        if not (type(ident) is str and len(ident) == 18 and ident.isascii() and ident.isdigit()):
            return None
    elif kind not in ("card_no", "phone") or not _plain(ident, 20):
        return None
    if type(amount) is not int or not 1 <= amount <= AMOUNT_MAX_FEN:
        return None
    if not (_plain(value["order_no"], 64) and _plain(value["store_code"], 32)):
        return None
    return value


class CaptureIn(Schema):
    amount_fen = StrictAmount(metadata={"description": "at most the hold; omitted: all of it"})


class RefundIn(Schema):
    charge_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=BIGINT_MAX))
    amount_fen = StrictAmount(required=True)


class ChargesQuery(Schema):
    order_no = _text(64, required=True)


class CardOut(Schema):
    card_no = fields.String(metadata={"description": "masked: the last 4 digits"})
    level = fields.String()
    discount_percent = fields.Integer(metadata={"description": "the level's discount, for the till's own pricing"})


class MemberLookupOut(Schema):
    member_id = fields.Integer(required=True)
    name = fields.String(metadata={"description": "masked"})
    phone = fields.String(allow_none=True, metadata={"description": "masked"})
    status = fields.String()
    card = fields.Nested(CardOut)
    balance = fields.Nested(BalanceSchema)


class ChargeOut(Schema):
    charge_id = fields.Integer(required=True)
    kind = fields.String()
    status = fields.String()
    order_no = fields.String()
    store_code = fields.String()
    member_id = fields.Integer()
    amount_fen = fields.Integer()
    principal_fen = fields.Integer(metadata={"description": "taken from principal"})
    bonus_fen = fields.Integer(metadata={"description": "taken from bonus"})
    balance = fields.Nested(BalanceSchema, metadata={"description": "after the charge"})
    points_earned = fields.Integer(metadata={"description": "points the payment earned (pending per the merchant)"})


class HoldOut(ChargeOut):
    hold_id = fields.Integer(required=True)


class CaptureOut(Schema):
    hold_id = fields.Integer(required=True)
    charge_id = fields.Integer()
    status = fields.String()
    order_no = fields.String()
    member_id = fields.Integer()
    held_fen = fields.Integer()
    amount_fen = fields.Integer(metadata={"description": "captured"})
    principal_fen = fields.Integer()
    bonus_fen = fields.Integer()
    released_fen = fields.Integer()
    balance = fields.Nested(BalanceSchema)
    points_earned = fields.Integer(metadata={"description": "points the payment earned (pending per the merchant)"})


class VoidOut(Schema):
    hold_id = fields.Integer(required=True)
    status = fields.String()
    order_no = fields.String()
    member_id = fields.Integer()
    held_fen = fields.Integer()
    released_fen = fields.Integer()
    balance = fields.Nested(BalanceSchema)


class RefundOut(Schema):
    refund_id = fields.Integer(required=True)
    charge_id = fields.Integer()
    order_no = fields.String()
    member_id = fields.Integer()
    amount_fen = fields.Integer()
    principal_fen = fields.Integer(metadata={"description": "restored to principal"})
    bonus_fen = fields.Integer(metadata={"description": "restored to bonus"})
    refunded_fen = fields.Integer(metadata={"description": "refunded of this charge so far"})
    refundable_fen = fields.Integer()
    balance = fields.Nested(BalanceSchema)
    points_taken_back = fields.Integer(metadata={"description": "points of the charge taken back (or voided)"})


class RefundItem(Schema):
    refund_id = fields.Integer()
    amount_fen = fields.Integer()
    principal_fen = fields.Integer()
    bonus_fen = fields.Integer()
    created_at = fields.String()


class ChargeItem(Schema):
    charge_id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    order_no = fields.String()
    store_code = fields.String()
    member_id = fields.Integer()
    amount_fen = fields.Integer()
    principal_fen = fields.Integer()
    bonus_fen = fields.Integer()
    paid_fen = fields.Integer()
    refunded_fen = fields.Integer()
    refundable_fen = fields.Integer()
    created_at = fields.String()
    refunds = fields.List(fields.Nested(RefundItem))


class ChargeList(Schema):
    items = fields.List(fields.Nested(ChargeItem), required=True)


class PayCodeQuery(Schema):
    qr = fields.String(
        validate=validate.OneOf(["svg"]), metadata={"description": "`svg`: the code as a QR code too (`qr_svg`)"}
    )


class PayCodeOut(Schema):
    code = fields.String(required=True, metadata={"description": "18 digits, single use"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds"})
    qr_svg = fields.String(metadata={"description": "with `?qr=svg`: an SVG image of the QR code of `code`"})
