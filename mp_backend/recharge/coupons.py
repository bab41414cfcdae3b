"""Coupon templates and the coupons a recharge gives.

Stock is taken with one guarded UPDATE (``stock >= qty``), so two recharges can never take the last
coupon twice; an exhausted or expired template makes the gift lapse, and the caller records it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, or_, update

from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..models_base import utcnow
from .models import COUPON_KINDS, Coupon, CouponTemplate

template_t = CouponTemplate.__table__
coupon_t = Coupon.__table__


def issue_for_order(member_id: int, template_id: int, qty: int, order_id: int | None) -> tuple[int, str]:
    """Take ``qty`` from the template's stock and issue the coupons, in the caller's transaction.

    All or nothing: returns (granted, "") or (0, why it lapsed)."""
    now = utcnow()
    template = db.session.get(CouponTemplate, template_id)
    if template is None:
        return 0, "券模板已删除"
    taken = db.session.execute(
        update(template_t)
        .where(
            template_t.c.id == template_id,
            or_(template_t.c.stock.is_(None), template_t.c.stock >= qty),
            or_(template_t.c.issue_until.is_(None), template_t.c.issue_until > now),
        )
        .values(stock=template_t.c.stock - qty)
    ).rowcount
    if taken != 1:
        db.session.refresh(template)
        if template.issue_until is not None and template.issue_until <= now:
            return 0, f"{template.name}已过发放期"
        return 0, f"{template.name}库存不足"
    valid_until = now + timedelta(days=template.validity_days)
    db.session.execute(
        insert(coupon_t),
        [
            {
                "member_id": member_id,
                "template_id": template_id,
                "order_id": order_id,
                "seq": seq,
                "valid_until": valid_until,
                "status": "unused",
                "created_at": now,
            }
            for seq in range(1, qty + 1)
        ],
    )
    return qty, ""


def describe(template: CouponTemplate) -> str:
    """The coupon in the member's words: its terms, after its name unless the name already says them."""
    if template.kind == "discount":
        whole, tenth = divmod(template.value, 10)
        terms = f"{whole}{'.' + str(tenth) if tenth else ''}折"
    elif template.kind == "threshold":
        terms = f"满{_yuan_short(template.threshold_fen)}减{_yuan_short(template.value)}"
    else:
        terms = f"立减{_yuan_short(template.value)}元"
    if template.name == terms:
        return f"{terms}券"
    return f"{template.name}（{terms}）"


def _yuan_short(fen: int) -> str:
    from ..money import yuan

    text = yuan(fen)
    return text[:-3] if text.endswith(".00") else text


def validate_template(fields: dict) -> None:
    kind = fields.get("kind")
    if kind not in COUPON_KINDS:
        raise ValidationFailed("券类型只能是 amount_off、discount 或 threshold", code="invalid_coupon_kind")
    value = fields.get("value")
    if not isinstance(value, int) or value <= 0 or (kind == "discount" and value >= 100):
        raise ValidationFailed("券面值无效（折扣券填 1-99）", code="invalid_coupon_value")
    if kind == "threshold" and (fields.get("threshold_fen") or 0) <= value:
        raise ValidationFailed("满减券的门槛必须大于减免金额", code="invalid_coupon_threshold")
    stock = fields.get("stock")
    if stock is not None and stock < 0:
        raise ValidationFailed("库存不能为负数", code="invalid_coupon_stock")


def get_template(template_id: int) -> CouponTemplate:
    template = db.session.get(CouponTemplate, template_id)
    if template is None:
        raise NotFound("券模板不存在", code="coupon_template_not_found")
    return template
