"""Merchant console: card types, level rules, card operations, points rules and adjustments, the
points notification log; on the ``admin`` blueprint (/admin/api/...)."""

from __future__ import annotations

from ..errors import Forbidden
from ..loyalty import reminders
from ..loyalty import service as loyalty
from ..members import cards, levels
from ..members.summary import summarize
from ..org import service as org
from .admin import STAFF, blp
from .auth import current_staff
from .points_schemas import (
    AdjustIn,
    AdjustOut,
    CardActionIn,
    CardTypeIn,
    CardTypeList,
    CardTypeOut,
    CardTypePatch,
    EarnRuleIn,
    EarnRuleOut,
    LevelRuleIn,
    LevelRuleList,
    LevelRuleOut,
    PointsRulesOut,
    PointsSettingsIO,
    ReminderList,
    ReminderQuery,
)
from .schemas import Error, MemberSchema


def _errors(view, statuses=(400, 401, 403, 404, 409)):  # type: ignore[no-untyped-def]
    for status in statuses:
        view = blp.alt_response(status, schema=Error)(view)
    return blp.doc(security=STAFF)(view)


@blp.route("/card-types", methods=["GET"])
@blp.response(200, CardTypeList)
@_errors
def card_types() -> dict:
    """Card types (levels) with their benefits, lowest rank first."""
    current_staff()
    return {"items": cards.list_card_types()}


@blp.route("/card-types", methods=["POST"])
@blp.arguments(CardTypeIn)
@blp.response(201, CardTypeOut)
@_errors
def create_card_type(body: dict):  # type: ignore[no-untyped-def]
    """A new card type: discount, free shipping, points multiplier (percent), points validity (years)."""
    code = body.pop("code")
    return cards.create_card_type(current_staff().id, code, **body)


@blp.route("/card-types/<id:card_type_id>", methods=["PATCH"])
@blp.arguments(CardTypePatch)
@blp.response(200, CardTypeOut)
@_errors
def update_card_type(body: dict, card_type_id: int):  # type: ignore[no-untyped-def]
    return cards.update_card_type(current_staff().id, card_type_id, **body)


@blp.route("/level-rules", methods=["GET"])
@blp.response(200, LevelRuleList)
@_errors
def level_rules() -> dict:
    current_staff()
    return {"items": levels.list_rules()}


@blp.route("/level-rules", methods=["POST"])
@blp.arguments(LevelRuleIn)
@blp.response(201, LevelRuleOut)
@_errors
def create_level_rule(body: dict):  # type: ignore[no-untyped-def]
    """An upgrade or downgrade rule; a set of rules that could loop between levels is refused
    (``level_rule_loop``)."""
    return levels.create_rule(current_staff().id, **body)


@blp.route("/level-rules/<id:rule_id>", methods=["DELETE"])
@blp.response(200, LevelRuleOut)
@_errors
def deactivate_level_rule(rule_id: int):  # type: ignore[no-untyped-def]
    return levels.deactivate_rule(current_staff().id, rule_id)


@blp.route("/members/<id:member_id>/card", methods=["POST"])
@blp.arguments(CardActionIn)
@blp.response(200, MemberSchema)
@_errors
def card_action(body: dict, member_id: int) -> dict:
    """Report lost, cancel the loss report, freeze, unfreeze, or replace (a new number, same wallet)."""
    staff_id = current_staff().id
    if body["action"] == "replace":
        member = cards.replace_card(member_id, staff_id=staff_id, reason=body["reason"], store_id=body["store_id"])
    else:
        member = cards.card_action(
            member_id, body["action"], staff_id=staff_id, reason=body["reason"], store_id=body["store_id"]
        )
    return summarize(member).as_dict()  # type: ignore[arg-type]


@blp.route("/members/<id:member_id>/points/adjustments", methods=["POST"])
@blp.arguments(AdjustIn)
@blp.response(201, AdjustOut)
@_errors
def adjust_points(body: dict, member_id: int) -> dict:
    """Add (a new lot) or remove (earliest expiry first) points by hand, with a reason (audited)."""
    result = loyalty.adjust(
        member_id, body["delta"], staff_id=current_staff().id, reason=body["reason"], request_id=body["request_id"]
    )
    return {"points": result.points, "balance_after": result.balance_after, "replayed": result.replayed}


@blp.route("/points/rules", methods=["GET"])
@blp.response(200, PointsRulesOut)
@_errors
def points_rules() -> dict:
    """Earning rules and the merchant's points settings (redemption and exchange rates, member day)."""
    current_staff()
    return {"settings": loyalty.settings(), "items": loyalty.list_earn_rules()}


@blp.route("/points/rules", methods=["POST"])
@blp.arguments(EarnRuleIn)
@blp.response(201, EarnRuleOut)
@_errors
def create_earn_rule(body: dict):  # type: ignore[no-untyped-def]
    """Points per yuan recharged or spent, merchant-wide or for one store (replaces the active one)."""
    return loyalty.create_earn_rule(current_staff().id, **body)


@blp.route("/points/settings", methods=["PUT"])
@blp.arguments(PointsSettingsIO)
@blp.response(200, PointsSettingsIO)
@_errors
def points_settings(body: dict):  # type: ignore[no-untyped-def]
    return loyalty.update_settings(current_staff().id, **body)


@blp.route("/points/reminders", methods=["GET"])
@blp.arguments(ReminderQuery, location="query")
@blp.response(200, ReminderList)
@_errors
def reminder_log(query: dict) -> dict:
    """The points notification log: what was sent to whom, when, and WeChat's answer; newest first."""
    staff = current_staff()
    if "view_records" not in org.PERMISSIONS[staff.role]:
        raise Forbidden("当前角色没有此权限", code="permission_denied")
    rows = reminders.log_page(**query)
    return {"items": [dict(row._mapping) for row in rows], "next_before_id": rows[-1].id if rows else None}
