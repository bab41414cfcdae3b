"""Mini-program subscribe-message consents: what the member accepted in ``wx.requestSubscribeMessage``.

Each accepted template id is one consent, good for one message (WeChat's rule). The mini program
reports them right after the member taps; ``reminders`` uses the oldest unused one of a template when
it sends (and records WeChat's 43101, no consent left, by marking it ``refused``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..errors import Conflict, ValidationFailed
from ..extensions import db
from ..members.models import MemberOpenid
from ..models_base import utcnow
from ..transaction import transactional
from . import reminders
from .models import SubscribeConsent

MAX_PER_REPORT = 3  # wx.requestSubscribeMessage asks for at most 3 templates at once


def known_templates() -> dict[str, str]:
    """The subscribe templates the merchant configured: template id -> what it is for."""
    found = {
        reminders.subscribe_template_id("expiry"): "expiry",
        reminders.subscribe_template_id("birthday"): "birthday",
    }
    return {template: kind for template, kind in found.items() if template}


@transactional
def record(member_id: int, accepted: list[str]) -> list[dict[str, Any]]:
    """Record one consent per accepted template id; returns the unused consents per template after."""
    from flask import current_app

    templates = known_templates()
    if not accepted or len(accepted) > MAX_PER_REPORT:
        raise ValidationFailed(f"一次可报告 1-{MAX_PER_REPORT} 个模板", code="invalid_request")
    unknown = [t for t in accepted if t not in templates]
    if unknown:
        raise ValidationFailed(f"不是本商户的订阅消息模板：{unknown[0][:64]}", code="unknown_template")
    openid = db.session.scalar(
        select(MemberOpenid.openid).where(
            MemberOpenid.member_id == member_id,
            MemberOpenid.appid == (current_app.config.get("WECHAT_WXA_APPID") or ""),
        )
    )
    if not openid:
        raise Conflict("请先在小程序中登录", code="no_mini_program_openid")
    now = utcnow()
    db.session.add_all(
        SubscribeConsent(member_id=member_id, openid=openid, template_id=t, status="unused", created_at=now)
        for t in accepted
    )
    db.session.flush()
    return unused(member_id)


def unused(member_id: int) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(SubscribeConsent.template_id, func.count())
        .where(SubscribeConsent.member_id == member_id, SubscribeConsent.status == "unused")
        .group_by(SubscribeConsent.template_id)
        .order_by(SubscribeConsent.template_id)
    ).all()
    templates = known_templates()
    return [{"template_id": t, "kind": templates.get(t, ""), "unused": int(n)} for t, n in rows]
