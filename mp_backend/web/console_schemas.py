"""Schemas of the console's reports, lists, management and exports (``admin_console``)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..ledger.models import ENTRY_KINDS
from ..records.service import MAX_PER_PAGE
from ..reports.models import EXPORT_KINDS
from ..security import INT_MAX
from .ops_schemas import LedgerQuery
from .recharge_schemas import OrdersQuery

ID = validate.Range(min=1, max=INT_MAX)
CODE = validate.Length(min=1, max=32)
DAY_OR_TIME = {"description": "YYYY-MM-DD (Asia/Shanghai; `to` includes the whole day) or an ISO 8601 time"}


class PageIn(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class RangeIn(Schema):
    from_ = fields.String(data_key="from", validate=validate.Length(max=40), metadata=DAY_OR_TIME)
    to = fields.String(validate=validate.Length(max=40), metadata=DAY_OR_TIME)


class ScopeIn(Schema):
    store = fields.String(validate=CODE, metadata={"description": "a store code"})
    region = fields.String(validate=CODE, metadata={"description": "a region code"})


class DailyIn(ScopeIn):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=366))


class BySourceIn(RangeIn):
    store = fields.String(validate=CODE)


class PaymentsIn(PageIn, RangeIn):
    store = fields.String(validate=CODE)
    status = fields.String(
        validate=validate.OneOf(["pending", "paid", "failed", "held", "captured", "voided"]),
        metadata={"description": "balance payments: pending | paid | failed; till: paid | held | captured | voided"},
    )
    order_no = fields.String(validate=validate.Length(min=1, max=64))
    member = fields.String(validate=validate.Length(min=1, max=20), metadata={"description": "card number or phone"})
    member_id = fields.Integer(validate=ID)
    source = fields.String(validate=validate.OneOf(["order", "till"]))


class MembersIn(PageIn):
    q = fields.String(validate=validate.Length(max=64), metadata={"description": "card number, phone or name"})


class MemberLedgerIn(PageIn, RangeIn):
    kind = fields.String(validate=validate.OneOf(ENTRY_KINDS))


class AuditIn(PageIn, RangeIn):
    q = fields.String(validate=validate.Length(max=64), metadata={"description": "in the subject or the reason"})
    staff = fields.String(validate=validate.Length(max=64), metadata={"description": "username or id"})
    action = fields.String(validate=validate.Length(max=40))


class RegionIn(Schema):
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))


class StoreIn(RegionIn):
    region_code = fields.String(required=True, validate=CODE)


class StorePatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=64))
    region_code = fields.String(validate=CODE)


class StaffIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=8, max=256))
    role = fields.String(
        required=True, validate=validate.OneOf(["hq_admin", "region_manager", "store_manager", "clerk"])
    )
    store_code = fields.String(validate=CODE)
    region_code = fields.String(validate=CODE)


class StaffPatch(Schema):
    role = fields.String(validate=validate.OneOf(["hq_admin", "region_manager", "store_manager", "clerk"]))
    store_code = fields.String(validate=CODE)
    region_code = fields.String(validate=CODE)
    active = fields.Boolean(truthy={True}, falsy={False})
    password = fields.String(validate=validate.Length(min=8, max=256))


# Exports: the filters are those of the list the export comes from, checked by its own schema.
EXPORT_FILTERS = {
    "ledger": LedgerQuery,
    "recharge_orders": OrdersQuery,
    "payments": PaymentsIn,
    "members": MembersIn,
}


class ExportIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(EXPORT_KINDS))
    filters = fields.Dict(load_default=dict, metadata={"description": "the list's own query parameters"})

    @validates_schema
    def _filters(self, data: dict, **_kwargs: object) -> None:
        schema = EXPORT_FILTERS[data["kind"]]()
        errors = schema.validate(data.get("filters") or {})
        if errors:
            raise ValidationError({"filters": errors})


class ExportOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    filters = fields.Dict()
    status = fields.String(metadata={"description": "queued | running | done | failed"})
    rows_done = fields.Integer()
    rows_total = fields.Integer()
    error = fields.String(allow_none=True)
    created_at = fields.String()
    finished_at = fields.String(allow_none=True)
    download_url = fields.String(allow_none=True)


class Items(Schema):
    items = fields.List(fields.Dict(), required=True)


class PagedItems(Items):
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
    total_capped = fields.Boolean(metadata={"description": "more rows than `total` (counted up to 10,000)"})


class OverviewOut(Schema):
    scope = fields.Dict()
    balance = fields.Dict(
        allow_none=True,
        metadata={"description": "HQ only: principal_fen, bonus_fen, held_fen, total_fen, members_with_balance"},
    )
    today = fields.Dict(metadata={"description": "recharge_fen, recharge_count, consumption_fen, ..., refund_fen"})
    cumulative = fields.Dict(
        metadata={"description": "recharge_fen, recharge_members, recharge_count, bonus_given_fen"}
    )
    points_liability = fields.Integer(allow_none=True, metadata={"description": "HQ only: unexpired points"})
    pending = fields.Dict(metadata={"description": "held_fen (HQ), uncredited_orders, uncredited_fen"})
    as_of = fields.String()
    by_store = fields.List(fields.Dict())


class StoreOut(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    region_id = fields.Integer()
    region_code = fields.String()
    region_name = fields.String()


class RegionOut(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    stores = fields.Integer()
