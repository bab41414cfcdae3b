"""Schemas of offline and batch recharges and of the ledger records (console and members)."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from ..ledger.models import ENTRY_KINDS
from ..records.service import MAX_PER_PAGE
from ..security import INT_MAX
from .schemas import BalanceSchema, StrictAmount

ID = validate.Range(min=1, max=INT_MAX)


class MemberRefIn(Schema):
    id = fields.Integer(validate=ID)
    card_no = fields.String(validate=validate.Length(min=1, max=20))
    phone = fields.String(validate=validate.Length(min=1, max=20))


class OfflineRechargeIn(Schema):
    member = fields.Nested(MemberRefIn, required=True, metadata={"description": "exactly one of id, card_no, phone"})
    store_id = fields.Integer(validate=ID)
    store_code = fields.String(validate=validate.Length(min=1, max=32))
    method = fields.String(required=True, validate=validate.OneOf(["cash", "card_terminal"]))
    rule_id = fields.Integer(validate=ID, metadata={"description": "the rule whose rewards apply (or amount_fen)"})
    amount_fen = StrictAmount(metadata={"description": "a free amount, when the merchant's settings allow it"})
    receipt_no = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "the receipt number: the idempotency key, unique per store"},
    )
    note = fields.String(load_default="", validate=validate.Length(max=255))


class OfflineRechargeOut(Schema):
    id = fields.Integer()
    receipt_no = fields.String()
    store_id = fields.Integer()
    store_code = fields.String(allow_none=True)
    method = fields.String()
    member_id = fields.Integer()
    rule_id = fields.Integer(allow_none=True)
    amount_fen = fields.Integer()
    bonus_fen = fields.Integer()
    points = fields.Integer()
    coupons_granted = fields.Integer()
    coupons_lapsed = fields.Integer()
    card_outcome = fields.String(allow_none=True)
    reward_note = fields.String()
    rewards = fields.List(fields.String())
    operator = fields.String()
    note = fields.String()
    principal_entry_id = fields.Integer(allow_none=True)
    bonus_entry_id = fields.Integer(allow_none=True)
    balance = fields.Nested(BalanceSchema)
    replayed = fields.Boolean()
    created_at = fields.String(allow_none=True)


class BatchUploadIn(Schema):
    file = Upload(required=True, metadata={"description": ".xlsx or .csv (UTF-8 with or without BOM, or GBK)"})


class BatchRowError(Schema):
    row = fields.Integer()
    member_id = fields.Integer()
    amount_fen = fields.Integer()
    message = fields.String()


class BatchOut(Schema):
    id = fields.Integer()
    status = fields.String(metadata={"description": "pending | running | done"})
    total = fields.Integer()
    applied = fields.Integer()
    failed = fields.Integer()
    pending = fields.Integer()
    total_fen = fields.Integer()
    applied_fen = fields.Integer()
    filename = fields.String()
    store_id = fields.Integer(allow_none=True)
    note = fields.String()
    errors = fields.List(fields.Nested(BatchRowError))
    created_at = fields.String()
    finished_at = fields.String(allow_none=True)
    duplicate = fields.Boolean(metadata={"description": "the same rows were uploaded before: this is that batch"})
    encoding = fields.String()


class BalanceAfter(BalanceSchema):
    pass


class EntrySchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    kind_text = fields.String(metadata={"description": "the kind in words: 充值, 赠送, 消费, 退款 ..."})
    amount_fen = fields.Integer()
    amount_yuan = fields.String(metadata={"description": "signed, two decimals: +100.00, -12.30"})
    principal_delta_fen = fields.Integer()
    bonus_delta_fen = fields.Integer()
    held_delta_fen = fields.Integer()
    balance_after = fields.Nested(BalanceAfter)
    store_name = fields.String()
    reference = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.String()
    time = fields.String(metadata={"description": "China time, for people"})
    member_id = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    store_code = fields.String(allow_none=True)
    operator = fields.String()


class EntryList(Schema):
    items = fields.List(fields.Nested(EntrySchema), required=True)
    total = fields.Integer()
    total_capped = fields.Boolean(metadata={"description": "more rows than the total says (counted up to 10,000)"})
    page = fields.Integer()
    per_page = fields.Integer()


class RecordsPage(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class LedgerQuery(RecordsPage):
    store = fields.String(validate=validate.Length(min=1, max=32))
    operator = fields.String(validate=validate.Length(min=1, max=64))
    kind = fields.String(validate=validate.OneOf(ENTRY_KINDS))
    created_from = fields.DateTime(format="iso")
    created_to = fields.DateTime(format="iso")
    reference = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "order number"})
    member_id = fields.Integer(validate=ID)
    member = fields.String(validate=validate.Length(min=1, max=20), metadata={"description": "card number or phone"})
