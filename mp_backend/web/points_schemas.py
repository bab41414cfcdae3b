"""Schemas of the points, card and level endpoints (members' and merchant's)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..security import INT_MAX

RequestId = fields.String(required=True, validate=validate.Length(min=1, max=64))
Reason = fields.String(required=True, validate=validate.Length(min=1, max=255))


class LotOut(Schema):
    id = fields.Integer()
    amount = fields.Integer()
    remaining = fields.Integer()
    earned_at = fields.DateTime()
    expires_at = fields.DateTime(metadata={"description": "UTC; the lot is valid before this moment"})
    last_valid_day = fields.Date(metadata={"description": "the last local day the points can be used"})
    source = fields.String()


class PendingLotOut(Schema):
    id = fields.Integer()
    remaining = fields.Integer()
    earned_at = fields.DateTime()
    available_at = fields.DateTime(metadata={"description": "UTC; usable from this moment"})


class MyPointsOut(Schema):
    balance = fields.Integer(required=True)
    pending = fields.Integer(metadata={"description": "points earned by purchases, not usable yet"})
    pending_items = fields.List(fields.Nested(PendingLotOut))
    expiring_soon = fields.Integer(required=True, metadata={"description": "points expiring within 30 days"})
    items = fields.List(fields.Nested(LotOut), required=True)
    exchange_points_per_yuan = fields.Integer()


class ExchangeIn(Schema):
    points = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000_000))
    request_id = RequestId


class ExchangeOut(Schema):
    points = fields.Integer()
    bonus_fen = fields.Integer()
    points_balance = fields.Integer()
    replayed = fields.Boolean()


class AdjustIn(Schema):
    delta = fields.Integer(required=True, strict=True, validate=validate.Range(min=-100_000_000, max=100_000_000))
    reason = Reason
    request_id = RequestId


class AdjustOut(Schema):
    points = fields.Integer()
    balance_after = fields.Integer()
    replayed = fields.Boolean()


class CardTypeIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=32))
    name = fields.String(required=True, validate=validate.Length(min=1, max=32))
    level_rank = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000), load_default=1)
    discount_percent = fields.Integer(strict=True, validate=validate.Range(min=1, max=100), load_default=100)
    free_shipping = fields.Boolean(load_default=False)
    points_multiplier_percent = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000), load_default=100)
    points_validity_years = fields.Integer(strict=True, validate=validate.OneOf([1, 2, 3, 5, 10]), load_default=2)


class CardTypePatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=32))
    level_rank = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))
    discount_percent = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))
    free_shipping = fields.Boolean()
    points_multiplier_percent = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))
    points_validity_years = fields.Integer(strict=True, validate=validate.OneOf([1, 2, 3, 5, 10]))
    active = fields.Boolean()


class CardTypeOut(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    level_rank = fields.Integer()
    discount_percent = fields.Integer()
    free_shipping = fields.Boolean()
    points_multiplier_percent = fields.Integer()
    points_validity_years = fields.Integer()
    active = fields.Boolean()


class CardTypeList(Schema):
    items = fields.List(fields.Nested(CardTypeOut), required=True)


class LevelRuleIn(Schema):
    direction = fields.String(required=True, validate=validate.OneOf(["up", "down"]))
    from_card_type_id = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(1, INT_MAX)
    )
    to_card_type_id = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(1, INT_MAX)
    )
    metric = fields.String(required=True, validate=validate.OneOf(["recharge", "spend", "points"]))
    threshold = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10**12))
    period_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3660))


class LevelRuleOut(Schema):
    id = fields.Integer()
    direction = fields.String()
    from_card_type_id = fields.Integer(allow_none=True)
    to_card_type_id = fields.Integer(allow_none=True)
    metric = fields.String()
    threshold = fields.Integer()
    period_days = fields.Integer()
    active = fields.Boolean()


class LevelRuleList(Schema):
    items = fields.List(fields.Nested(LevelRuleOut), required=True)


class CardActionIn(Schema):
    action = fields.String(
        required=True, validate=validate.OneOf(["report_loss", "cancel_loss", "freeze", "unfreeze", "replace"])
    )
    reason = Reason
    store_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(1, INT_MAX))


class EarnRuleIn(Schema):
    trigger = fields.String(required=True, validate=validate.OneOf(["recharge", "spend"]))
    points_per_yuan = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=1000))
    store_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(1, INT_MAX))


class EarnRuleOut(Schema):
    id = fields.Integer()
    trigger = fields.String()
    points_per_yuan = fields.Integer()
    store_id = fields.Integer(allow_none=True)
    active = fields.Boolean()


class PointsSettingsIO(Schema):
    redeem_points_per_yuan = fields.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    redeem_max_percent = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    exchange_points_per_yuan = fields.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    member_day = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=28))
    member_day_multiplier_percent = fields.Integer(strict=True, validate=validate.Range(min=100, max=1000))
    birthday_points = fields.Integer(strict=True, validate=validate.Range(min=0, max=100_000))
    pending_days = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=90), metadata={"description": "0: purchase points at once"}
    )
    referral_points = fields.Integer(strict=True, validate=validate.Range(min=0, max=1_000_000))
    referral_monthly_cap = fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000))


class PointsRulesOut(Schema):
    settings = fields.Nested(PointsSettingsIO, required=True)
    items = fields.List(fields.Nested(EarnRuleOut), required=True)


class ReminderQuery(Schema):
    status = fields.String(
        validate=validate.OneOf(["pending", "sending", "sent", "retry", "failed", "gave_up", "skipped"])
    )
    member_id = fields.Integer(validate=validate.Range(1, INT_MAX))
    before_id = fields.Integer(validate=validate.Range(1, 2**63 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class ReminderOut(Schema):
    id = fields.Integer()
    member_id = fields.Integer()
    kind = fields.String()
    expiry_date = fields.Date()
    offset_days = fields.Integer()
    points = fields.Integer()
    status = fields.String()
    openid = fields.String(allow_none=True)
    template_id = fields.String(allow_none=True)
    client_msg_id = fields.String()
    msgid = fields.String(allow_none=True)
    errcode = fields.Integer(allow_none=True)
    channel = fields.String()
    detail = fields.String()
    attempts = fields.Integer()
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)


class ReminderList(Schema):
    items = fields.List(fields.Nested(ReminderOut), required=True)
    next_before_id = fields.Integer(allow_none=True)


class SubscribeConsentIn(Schema):
    """The template ids the member accepted in ``wx.requestSubscribeMessage`` (its ``accept`` answers)."""

    accepted = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)), required=True, validate=validate.Length(min=1, max=3)
    )


class SubscribeConsentOut(Schema):
    template_id = fields.String()
    kind = fields.String()
    unused = fields.Integer()


class SubscribeConsentList(Schema):
    items = fields.List(fields.Nested(SubscribeConsentOut), required=True)


class ReferralBindIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=16))


class ReferralItemOut(Schema):
    invitee_id = fields.Integer()
    status = fields.String(metadata={"description": "bound | rewarded | capped"})
    points = fields.Integer()
    created_at = fields.DateTime()
    rewarded_at = fields.DateTime(allow_none=True)


class ReferralOut(Schema):
    code = fields.String(required=True)
    link = fields.String(required=True)
    invited_by = fields.Integer(allow_none=True)
    invited = fields.Integer()
    rewarded = fields.Integer()
    points = fields.Integer()
    items = fields.List(fields.Nested(ReferralItemOut), required=True)


class ReferralBindOut(Schema):
    inviter_id = fields.Integer()
    status = fields.String()
