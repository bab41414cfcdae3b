"""Merchant console: recharge rules, coupon templates, settings, orders, statistics, anomalies and QR
codes, on the ``admin`` blueprint (/admin/api/...)."""

from __future__ import annotations

from flask import Response, current_app

from ..recharge import qr
from ..recharge import service as recharge
from ..recharge import wxacode as rule_wxacode
from ..recharge.models import RechargeAnomaly
from ..records.service import TOTAL_CAP
from .admin import STAFF, blp
from .auth import current_staff
from .recharge_schemas import (
    AnomalyList,
    CouponTemplateIn,
    CouponTemplateList,
    CouponTemplatePatch,
    CouponTemplateSchema,
    OrderList,
    OrderSchema,
    OrdersQuery,
    PageQuery,
    QrQuery,
    RuleIn,
    RuleList,
    RuleOrderIn,
    RulePatch,
    RuleSchema,
    SettingsIn,
    SettingsSchema,
    StatsList,
    StatsQuery,
    WxaCodeQuery,
)
from .schemas import Error

ERRORS = ((400, Error), (401, Error), (403, Error), (404, Error), (409, Error))


def _errors(view):  # type: ignore[no-untyped-def]
    for status, schema in ERRORS:
        view = blp.alt_response(status, schema=schema)(view)
    return blp.doc(security=STAFF)(view)


def _naive(value):  # type: ignore[no-untyped-def]
    """Times are stored as naive UTC; an aware time from the console is converted."""
    if value is not None and value.tzinfo is not None:
        from datetime import UTC

        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _times(query: dict) -> dict:
    """Naive UTC times; a ``*_from`` after its ``*_to``, or more than 366 days apart, is 422 invalid_range."""
    from ..reports.ranges import check_range

    times = {k: _naive(v) if k.endswith(("_from", "_to")) else v for k, v in query.items() if v is not None}
    for prefix in ("created", "paid"):
        check_range(times.get(f"{prefix}_from"), times.get(f"{prefix}_to"))
    return times


def _rule_fields(body: dict) -> dict:
    for name in ("starts_at", "ends_at"):
        if name in body:
            body[name] = _naive(body[name])
    return body


@blp.route("/rules", methods=["GET"])
@blp.arguments(PageQuery, location="query")
@blp.response(200, RuleList)
@_errors
def rules_list(_query: dict) -> dict:
    """Every rule (active and archived), in display order, with its order count."""
    rules = recharge.list_rules(current_staff().id)
    return {"items": [recharge.rule_dict(rule, admin=True) for rule in rules]}


@blp.route("/rules", methods=["POST"])
@blp.arguments(RuleIn)
@blp.response(201, RuleSchema)
@_errors
def rules_create(body: dict) -> dict:
    """Create a rule (hq_admin anywhere; region_manager for stores of the region)."""
    rule = recharge.create_rule(current_staff().id, _rule_fields(body))
    return recharge.rule_dict(rule, admin=True)


@blp.route("/rules/<id:rule_id>", methods=["GET"])
@blp.response(200, RuleSchema)
@_errors
def rules_detail(rule_id: int) -> dict:
    recharge.require_viewer(current_staff().id)
    return recharge.rule_dict(recharge.get_rule(rule_id), admin=True)


@blp.route("/rules/<id:rule_id>", methods=["PATCH"])
@blp.arguments(RulePatch)
@blp.response(200, RuleSchema)
@_errors
def rules_update(body: dict, rule_id: int) -> dict:
    """Edit a rule; orders already placed keep the snapshot they were paid under."""
    return recharge.rule_dict(recharge.update_rule(current_staff().id, rule_id, _rule_fields(body)), admin=True)


@blp.route("/rules/<id:rule_id>/archive", methods=["POST"])
@blp.response(200, RuleSchema)
@_errors
def rules_archive(rule_id: int) -> dict:
    """Archive a rule (rules are never deleted: orders keep pointing at them)."""
    return recharge.rule_dict(recharge.archive_rule(current_staff().id, rule_id), admin=True)


@blp.route("/rules/order", methods=["POST"])
@blp.arguments(RuleOrderIn)
@blp.response(200, RuleList)
@_errors
def rules_reorder(body: dict) -> dict:
    """Set the display order: the rules listed first come first."""
    rules = recharge.reorder_rules(current_staff().id, body["rule_ids"])
    return {"items": [recharge.rule_dict(rule, admin=True) for rule in rules]}


def _download(image: bytes, mimetype: str, name: str, extension: str) -> Response:
    plain, encoded = qr.download_name(name, extension)
    response = Response(image, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{plain}"; filename*={encoded}'
    return response


def _qr_response(url: str, fmt: str, name: str, query: dict) -> Response:
    image = qr.qr_image(url, fmt, size=query["size"], margin=query["margin"])
    return _download(image, "image/png" if fmt == "png" else "image/svg+xml", name, fmt)


@blp.route("/rules/<id:rule_id>/qrcode.<any(png, svg):fmt>", methods=["GET"])
@blp.arguments(QrQuery, location="query")
@_errors
def rules_qrcode(query: dict, rule_id: int, fmt: str) -> Response:
    """The QR code of the rule's short link (``?src=`` tag, ``?store=``; ``size`` px per module, ``margin``).

    Within the staff member's scope: a store, or a rule offered only at stores, outside it is 403."""
    target = recharge.code_target(current_staff().id, rule_id, query.get("store"))
    url = qr.link_with(recharge.rule_link(str(target.code)), store=query.get("store"), src=query.get("src"))
    return _qr_response(url, fmt, target.name, query)


@blp.route("/recharge-home/qrcode.<any(png, svg):fmt>", methods=["GET"])
@blp.arguments(QrQuery, location="query")
@_errors
def home_qrcode(query: dict, fmt: str) -> Response:
    """The QR code of the recharge home (/r), every active rule."""
    target = recharge.code_target(current_staff().id, None, query.get("store"))
    url = qr.link_with(f"{current_app.config['PUBLIC_BASE_URL']}/r", store=query.get("store"), src=query.get("src"))
    return _qr_response(url, fmt, target.name, query)


def _wxacode_response(rule_id: int | None, query: dict) -> Response:
    made = rule_wxacode.rule_code(
        current_staff().id, rule_id, src=query.get("src"), store=query.get("store"), width=query["width"]
    )
    response = _download(made.code.image, made.code.mimetype, f"{made.name}_小程序码", made.code.extension)
    response.headers["X-Wxacode-Scene"] = made.scene
    return response


def _wxacode_errors(view):  # type: ignore[no-untyped-def]
    for status in (429, 502):
        view = blp.alt_response(status, schema=Error)(view)
    return _errors(view)


@blp.route("/rules/<id:rule_id>/wxacode", methods=["GET"])
@blp.arguments(WxaCodeQuery, location="query")
@_wxacode_errors
def rules_wxacode(query: dict, rule_id: int) -> Response:
    """The mini-program code (wxacode.getUnlimited) of an active rule: opens ``WECHAT_WXA_RECHARGE_PAGE``
    with the scene ``<rule code>[*<src>[*<store>]]`` (``X-Wxacode-Scene``; 32 characters at most, else
    400 ``scene_too_long``). The image as WeChat draws it (JPEG; PNG in the sandbox), ``width`` 280-1280
    px; kept once made. Scope as for the QR code; an archived rule is 409 ``rule_archived``. WeChat's
    refusals: 502 ``wxacode_page_invalid`` (page not published), 429 ``wechat_rate_limited``, 502
    ``wechat_unavailable``."""
    return _wxacode_response(rule_id, query)


@blp.route("/recharge-home/wxacode", methods=["GET"])
@blp.arguments(WxaCodeQuery, location="query")
@_wxacode_errors
def home_wxacode(query: dict) -> Response:
    """The mini-program code of the recharge home (every active rule): scene ``*[<src>[*<store>]]``."""
    return _wxacode_response(None, query)


@blp.route("/recharge-orders", methods=["GET"])
@blp.arguments(OrdersQuery, location="query")
@blp.response(200, OrderList)
@_errors
def orders_list(query: dict) -> dict:
    """Recharge orders by rule, store, source tag, status, creation or payment time range and order number."""
    page, per_page = query.pop("page"), query.pop("per_page")
    query = _times(query)
    store = query.pop("store", None)
    orders, total = recharge.list_orders(
        current_staff().id, recharge.OrderFilter(store_code=store, **query), page=page, per_page=per_page
    )
    return {
        "items": [recharge.order_dict(o, admin=True) for o in orders],
        "total": min(total, TOTAL_CAP),
        "total_capped": total > TOTAL_CAP,
        "page": page,
        "per_page": per_page,
    }


@blp.route("/recharge-stats", methods=["GET"])
@blp.arguments(StatsQuery, location="query")
@blp.response(200, StatsList)
@_errors
def stats(query: dict) -> dict:
    """Per rule (``group_by=rule``) or source tag (``group_by=src``): orders, members, paid, bonus, coupons.

    ``from``/``to`` are payment times (money counts in the period it arrived), the same as
    ``paid_from``/``paid_to``; ``created_from``/``created_to`` select by when the order was placed."""
    group_by = query.pop("group_by")
    query.pop("page"), query.pop("per_page")
    query.setdefault("paid_from", query.pop("from_", None))
    query.setdefault("paid_to", query.pop("to", None))
    query = _times(query)
    store = query.pop("store", None)
    rows = recharge.stats(current_staff().id, group_by, recharge.OrderFilter(store_code=store, **query))
    return {"items": rows, "group_by": group_by}


@blp.route("/recharge-orders/<out_trade_no>/credit", methods=["POST"])
@blp.response(200, OrderSchema)
@_errors
def order_credit(out_trade_no: str) -> dict:
    """Credit an order paid while the member's card was frozen or lost (``paid_uncredited``), once the
    card is active again (the job does it every minute too); 409 ``member_frozen`` while it is not."""
    staff = current_staff()
    order = recharge.credit_held(staff.id, out_trade_no[:64])
    return recharge.order_dict(order, admin=True)


def _anomaly_dict(row: RechargeAnomaly) -> dict:
    return {
        "id": row.id,
        "kind": row.kind,
        "out_trade_no": row.out_trade_no,
        "transaction_id": row.transaction_id,
        "order_id": row.order_id,
        "detail": row.detail,
        "raw": row.raw,
        "created_at": row.created_at.isoformat(),
    }


@blp.route("/recharge-anomalies", methods=["GET"])
@blp.arguments(PageQuery, location="query")
@blp.response(200, AnomalyList)
@_errors
def anomalies(query: dict) -> dict:
    """Notifications that did not match their order (nothing credited), and payments credited or held
    in an unusual way: ``member_frozen`` (paid, held until the card is active), ``paid_after_close``,
    ``balance_cap_exceeded``."""
    rows, total = recharge.list_anomalies(current_staff().id, page=query["page"], per_page=query["per_page"])
    return {"items": [_anomaly_dict(r) for r in rows], "total": total, **query}


@blp.route("/coupon-templates", methods=["GET"])
@blp.response(200, CouponTemplateList)
@_errors
def coupon_templates() -> dict:
    return {"items": recharge.list_coupon_templates(current_staff().id)}


@blp.route("/coupon-templates", methods=["POST"])
@blp.arguments(CouponTemplateIn)
@blp.response(201, CouponTemplateSchema)
@_errors
def coupon_template_create(body: dict):  # type: ignore[no-untyped-def]
    body["issue_until"] = _naive(body.get("issue_until"))
    return recharge.save_coupon_template(current_staff().id, body)


@blp.route("/coupon-templates/<id:template_id>", methods=["PATCH"])
@blp.arguments(CouponTemplatePatch)
@blp.response(200, CouponTemplateSchema)
@_errors
def coupon_template_update(body: dict, template_id: int):  # type: ignore[no-untyped-def]
    if "issue_until" in body:
        body["issue_until"] = _naive(body["issue_until"])
    return recharge.save_coupon_template(current_staff().id, body, template_id)


@blp.route("/recharge-settings", methods=["GET"])
@blp.response(200, SettingsSchema)
@_errors
def settings_get():  # type: ignore[no-untyped-def]
    recharge.require_viewer(current_staff().id)
    return recharge.settings()


@blp.route("/recharge-settings", methods=["PUT"])
@blp.arguments(SettingsIn)
@blp.response(200, SettingsSchema)
@_errors
def settings_put(body: dict):  # type: ignore[no-untyped-def]
    """Free amount on/off and its bounds (hq_admin)."""
    return recharge.save_settings(current_staff().id, body)
