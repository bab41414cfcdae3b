"""Schemas of the recharge endpoints (members, merchant console)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..recharge.wxacode import CODE_PATTERN, MAX_SCENE_LENGTH, SRC_PATTERN
from ..wechat.wxacode import DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH
from .schemas import StrictAmount

SRC = validate.Regexp(SRC_PATTERN, error="来源标记只能包含字母、数字和 _ . : -")
CODE = validate.Regexp(CODE_PATTERN)


class RulesQuery(Schema):
    store = fields.String(validate=CODE)
    code = fields.String(validate=CODE)
    scene = fields.String(
        validate=validate.Length(min=1, max=MAX_SCENE_LENGTH),
        metadata={"description": "a mini-program code's scene, decoded (instead of code, store)"},
    )

    @validates_schema
    def _scene_alone(self, data: dict, **_kwargs: object) -> None:
        if data.get("scene") and (data.get("code") or data.get("store")):
            raise ValidationError("scene 已包含活动码和门店，不能再同时传 code 或 store", "scene")


class RechargeIn(Schema):
    rule_id = fields.Integer(strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    amount_fen = StrictAmount()
    store = fields.String(validate=CODE, allow_none=True)
    src = fields.String(validate=SRC, allow_none=True)


class RechargeOut(Schema):
    out_trade_no = fields.String(required=True)
    amount_fen = fields.Integer()
    pay_params = fields.Dict(required=True)
    sandbox_pay_url = fields.String()


class RuleSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    amount_fen = fields.Integer()
    amount_yuan = fields.String()
    bonus_fen = fields.Integer()
    points = fields.Integer()
    coupon = fields.Dict(allow_none=True)
    card = fields.Dict(allow_none=True)
    link = fields.String()
    rewards = fields.List(fields.String())
    rewards_text = fields.String()
    starts_at = fields.String(allow_none=True)
    ends_at = fields.String(allow_none=True)
    all_stores = fields.Boolean()
    store_codes = fields.List(fields.String())
    sort_order = fields.Integer()
    status = fields.String()
    order_count = fields.Integer()


class SceneSchema(Schema):
    code = fields.String(allow_none=True, metadata={"description": "the rule's code; null: every active rule"})
    src = fields.String(allow_none=True, metadata={"description": "source tag, to send with POST /api/recharges"})
    store = fields.String(allow_none=True, metadata={"description": "store code, to send with POST /api/recharges"})


class RuleList(Schema):
    items = fields.List(fields.Nested(RuleSchema), required=True)
    free_amount = fields.Dict()
    scene = fields.Nested(SceneSchema, metadata={"description": "what ?scene= named"})


class OrderSchema(Schema):
    class Meta:
        unknown = "include"

    out_trade_no = fields.String()
    status = fields.String()
    amount_fen = fields.Integer()
    bonus_fen = fields.Integer()
    points = fields.Integer()
    rule_id = fields.Integer(allow_none=True)
    rule_name = fields.String(allow_none=True)
    rewards = fields.List(fields.String())
    coupons_granted = fields.Integer()
    coupons_lapsed = fields.Integer()
    card_outcome = fields.String(allow_none=True)
    reward_note = fields.String()
    src = fields.String(allow_none=True)
    created_at = fields.String()
    paid_at = fields.String(allow_none=True)
    balance = fields.Dict()
    points_balance = fields.Integer()
    id = fields.Integer()
    member_id = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    appid = fields.String()
    transaction_id = fields.String(allow_none=True)
    paid_via = fields.String(allow_none=True)
    closed_at = fields.String(allow_none=True)


class RuleIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount_fen = StrictAmount(required=True)
    bonus_fen = fields.Integer(strict=True, validate=validate.Range(min=0, max=1_000_000_000))
    points = fields.Integer(strict=True, validate=validate.Range(min=0, max=100_000_000))
    coupon_template_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    coupon_qty = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    card_type_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    card_only_non_members = fields.Boolean()
    starts_at = fields.DateTime(allow_none=True, format="iso")
    ends_at = fields.DateTime(allow_none=True, format="iso")
    store_codes = fields.List(fields.String(validate=CODE), validate=validate.Length(max=500))
    sort_order = fields.Integer(strict=True, validate=validate.Range(min=-1_000_000, max=1_000_000))


class RulePatch(RuleIn):
    """Any subset of a rule's fields."""

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(partial=True, **kwargs)


class RuleOrderIn(Schema):
    rule_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=2**31 - 1)),
        required=True,
        validate=validate.Length(min=1, max=500),
    )


class OrdersQuery(Schema):
    rule_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    store = fields.String(validate=CODE)
    src = fields.String(validate=SRC)
    status = fields.String(validate=validate.OneOf(["pending", "paid", "paid_uncredited", "closed"]))
    out_trade_no = fields.String(validate=validate.Length(min=1, max=32))
    created_from = fields.DateTime(format="iso")
    created_to = fields.DateTime(format="iso")
    paid_from = fields.DateTime(format="iso", metadata={"description": "paid at or after (WeChat's payment)"})
    paid_to = fields.DateTime(format="iso", metadata={"description": "paid before"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class StatsQuery(OrdersQuery):
    group_by = fields.String(load_default="rule", validate=validate.OneOf(["rule", "src"]))
    # A period report counts money when it arrived: from/to are payment times (paid_from/paid_to).
    from_ = fields.DateTime(format="iso", data_key="from", metadata={"description": "paid at or after"})
    to = fields.DateTime(format="iso", metadata={"description": "paid before"})


class OrderList(Schema):
    items = fields.List(fields.Nested(OrderSchema), required=True)
    total = fields.Integer()
    total_capped = fields.Boolean(metadata={"description": "more rows than the total says (counted up to 10,000)"})
    page = fields.Integer()
    per_page = fields.Integer()


class StatsList(Schema):
    items = fields.List(fields.Dict(), required=True)
    group_by = fields.String()


class AnomalyList(Schema):
    items = fields.List(fields.Dict(), required=True)
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class PageQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class CouponTemplateIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(required=True, validate=validate.OneOf(["amount_off", "discount", "threshold"]))
    value = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=100_000_000))
    threshold_fen = fields.Integer(strict=True, validate=validate.Range(min=0, max=100_000_000))
    validity_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=3650))
    stock = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=100_000_000))
    issue_until = fields.DateTime(allow_none=True, format="iso")


class CouponTemplatePatch(CouponTemplateIn):
    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(partial=True, **kwargs)


class CouponTemplateSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    value = fields.Integer()
    threshold_fen = fields.Integer()
    validity_days = fields.Integer()
    stock = fields.Integer(allow_none=True)
    issue_until = fields.DateTime(allow_none=True)


class CouponTemplateList(Schema):
    items = fields.List(fields.Nested(CouponTemplateSchema), required=True)


class SettingsIn(Schema):
    free_amount_enabled = fields.Boolean()
    free_min_fen = StrictAmount()
    free_max_fen = StrictAmount()


class SettingsSchema(Schema):
    free_amount_enabled = fields.Boolean()
    free_min_fen = fields.Integer()
    free_max_fen = fields.Integer()


class WxaCodeQuery(Schema):
    width = fields.Integer(
        load_default=DEFAULT_WIDTH,
        validate=validate.Range(min=MIN_WIDTH, max=MAX_WIDTH),
        metadata={"description": "pixels, as WeChat draws it"},
    )
    src = fields.String(validate=SRC)
    store = fields.String(validate=CODE)


class QrQuery(Schema):
    size = fields.Integer(load_default=8, validate=validate.Range(min=1, max=40))  # pixels per module
    margin = fields.Integer(load_default=4, validate=validate.Range(min=0, max=20))  # modules of quiet zone
    src = fields.String(validate=SRC)
    store = fields.String(validate=CODE)
