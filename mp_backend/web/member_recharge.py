"""Members' recharge API, on the ``member`` blueprint (/api/rules, /api/recharges)."""

from __future__ import annotations

from flask import current_app, request

from ..extensions import db
from ..recharge import service as recharge
from ..recharge.wxacode import parse_scene
from .auth import current_member, current_member_appid
from .member import blp
from .recharge_schemas import OrderSchema, RechargeIn, RechargeOut, RuleList, RulesQuery
from .schemas import Error

MEMBER = [{"memberToken": []}]


@blp.route("/rules", methods=["GET"])
@blp.arguments(RulesQuery, location="query")
@blp.response(200, RuleList)
@blp.alt_response(400, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
def rules(query: dict) -> dict:
    """Active recharge rules (at a store with ``?store=``; one rule with ``?code=``), rewards in words.

    ``?scene=`` (a mini-program code's scene, after ``decodeURIComponent``) stands for ``code`` and
    ``store``; the answer's ``scene`` has its fields, ``src`` and ``store`` to send with the recharge."""
    scene = parse_scene(query["scene"]) if query.get("scene") else None
    code, store = (scene.code, scene.store) if scene else (query.get("code"), query.get("store"))
    items = [recharge.rule_for_page(code, store)] if code else recharge.active_rules(store)
    settings = recharge.settings()
    answer = {
        "items": [recharge.rule_dict(rule) for rule in items],
        "free_amount": {
            "enabled": settings.free_amount_enabled,
            "min_fen": settings.free_min_fen,
            "max_fen": settings.free_max_fen,
        },
    }
    if scene:
        answer["scene"] = scene.as_dict()
    return answer


@blp.route("/recharges", methods=["POST"])
@blp.arguments(RechargeIn)
@blp.response(201, RechargeOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.alt_response(502, schema=Error)
@blp.doc(security=MEMBER)
def create_recharge(body: dict) -> dict:
    """Create a recharge order and the WeChat Pay parameters (``wx.requestPayment`` / ``WeixinJSBridge``)."""
    member = current_member()
    appid = current_member_appid()
    started = recharge.start_recharge(
        member.id,
        appid,
        rule_id=body.get("rule_id"),
        amount_fen=body.get("amount_fen"),
        store_code=body.get("store"),
        src=body.get("src"),
        client_ip=request.remote_addr or "",
    )
    answer = {
        "out_trade_no": started.order.out_trade_no,
        "amount_fen": started.order.amount_fen,
        "pay_params": started.pay_params,
    }
    if current_app.config.get("WECHAT_SANDBOX"):
        prepay = started.pay_params["package"].removeprefix("prepay_id=")
        answer["sandbox_pay_url"] = f"/sandbox/wechatpay/sandbox/pay?prepay_id={prepay}"
    db.session.rollback()
    return answer


@blp.route("/recharges/<out_trade_no>", methods=["GET"])
@blp.response(200, OrderSchema)
@blp.alt_response(401, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.doc(security=MEMBER)
def recharge_status(out_trade_no: str) -> dict:
    """One of the member's recharge orders: status, rewards, and the balance once paid."""
    member = current_member()
    return recharge.order_dict(recharge.get_order(out_trade_no[:64], member.id))
