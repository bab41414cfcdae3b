"""Schemas of the payment and refund endpoints (members, merchant console)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .schemas import BalanceSchema, StrictAmount

PAY_PASSWORD = validate.Regexp(r"^[0-9]{6}$", error="支付密码必须是 6 位数字")
TEXT_ID = validate.Regexp(r"^[0-9A-Za-z_\-.:]{1,64}$", error="须为 1-64 位字母、数字或 _-.:")
STORE_CODE = validate.Regexp(r"^[A-Za-z0-9_-]{1,32}$")


class PayPasswordSetIn(Schema):
    pay_password = fields.String(required=True, validate=PAY_PASSWORD)


class PayPasswordChangeIn(Schema):
    old_pay_password = fields.String(required=True, validate=validate.Length(min=1, max=64))
    new_pay_password = fields.String(required=True, validate=PAY_PASSWORD)


class PayPasswordResetIn(Schema):
    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=128),
        metadata={"description": "a fresh wx.login() code of the mini program: re-verifies the member"},
    )
    new_pay_password = fields.String(required=True, validate=PAY_PASSWORD)


class PayPasswordStatus(Schema):
    is_set = fields.Boolean(required=True)


class PaymentIn(Schema):
    order_no = fields.String(required=True, validate=TEXT_ID, metadata={"description": "the merchant's order number"})
    amount_fen = StrictAmount(required=True, metadata={"description": "the order's amount before the card discount"})
    pay_password = fields.String(required=True, validate=validate.Length(min=1, max=64))
    request_id = fields.String(required=True, validate=TEXT_ID, metadata={"description": "idempotency key"})
    store = fields.String(validate=STORE_CODE, allow_none=True)
    points = fields.Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(min=0, max=100_000_000),
        metadata={"description": "points to redeem against the order (merchant's rate and maximum share)"},
    )


class PaymentSchema(Schema):
    order_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "pending | paid | failed"})
    amount_fen = fields.Integer(required=True)
    discount_percent = fields.Integer(required=True)
    discount_fen = fields.Integer(required=True)
    payable_fen = fields.Integer(required=True)
    points_used = fields.Integer(metadata={"description": "points redeemed against the order"})
    points_fen = fields.Integer(metadata={"description": "what the points took off (part of discount_fen)"})
    balance_fen = fields.Integer(required=True)
    wechat_fen = fields.Integer(required=True)
    refunded_balance_fen = fields.Integer()
    refunded_wechat_fen = fields.Integer()
    out_trade_no = fields.String(allow_none=True)
    summary = fields.String()
    created_at = fields.String()
    paid_at = fields.String(allow_none=True)
    balance = fields.Nested(BalanceSchema)
    pay_params = fields.Dict(metadata={"description": "for wx.requestPayment when a WeChat part is due"})
    sandbox_pay_url = fields.String()
    replayed = fields.Boolean()
    # console only
    id = fields.Integer()
    member_id = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    transaction_id = fields.String(allow_none=True)
    failure = fields.String()


class PaymentRefundIn(Schema):
    amount_fen = StrictAmount(required=True)
    request_id = fields.String(required=True, validate=TEXT_ID)
    reason = fields.String(load_default="", validate=validate.Length(max=255))


class PaymentRefundSchema(Schema):
    id = fields.Integer()
    request_id = fields.String()
    amount_fen = fields.Integer()
    balance_fen = fields.Integer()
    wechat_fen = fields.Integer()
    status = fields.String(metadata={"description": "processing | success | failed"})
    out_refund_no = fields.String(allow_none=True)
    failure = fields.String()
    created_at = fields.String()
    settled_at = fields.String(allow_none=True)


class PaymentRefundOut(Schema):
    refund = fields.Nested(PaymentRefundSchema, required=True)
    payment = fields.Nested(PaymentSchema, required=True)
    replayed = fields.Boolean()


class RechargeRefundIn(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=255))


class RechargeRefundSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    policy = fields.String()
    principal_fen = fields.Integer()
    bonus_fen = fields.Integer()
    bonus_spent_fen = fields.Integer()
    take_fen = fields.Integer()
    cash_fen = fields.Integer()
    out_refund_no = fields.String()
    coupons_voided = fields.Integer()
    points_taken_back = fields.Integer()
    failure = fields.String()
    created_at = fields.String()
    settled_at = fields.String(allow_none=True)
    replayed = fields.Boolean(metadata={"description": "true when this order's refund had been asked before"})
