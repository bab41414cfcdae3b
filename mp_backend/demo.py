"""Demo data for `make run`: a merchant someone can scan, recharge and spend with on a laptop.

Every step is keyed, so loading twice changes nothing (staff by username, members by their sandbox
unionid, balances by ledger idempotency keys). A demo member is one person in both apps, as the
sandbox answers the same unionid for ``sandbox-<openid>`` in the mini program and the official account
(DESIGN §5); so a changed WECHAT_WXA_APPID or WECHAT_MP_APPID finds the same member again.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import current_app
from sqlalchemy import select

from .extensions import db
from .ledger import service as ledger
from .members import service as members
from .members.models import Member, MemberOpenid
from .org import service as org
from .org.models import Staff
from .wechat.fake import sandbox_unionid

DEMO_PASSWORD = "demo-password"  # sandbox only; printed by make run
DEMO_MEMBERS = (
    # openid, name, principal, bonus
    ("demo-alice", "Alice 王", 20_000, 2_000),
    ("demo-bob", "Bob 李", 5_000, 0),
    ("demo-carol", "Carol 张", 0, 0),
)


def load_demo() -> Iterator[str]:
    org.ensure_merchant("示例咖啡")
    org.ensure_region("east", "华东区")
    org.ensure_store("sh01", "上海人民广场店", "east")
    org.ensure_store("sh02", "上海静安寺店", "east")
    for username, role, store in (("admin", "hq_admin", None), ("clerk", "clerk", "sh01")):
        if db.session.scalars(select(Staff).where(Staff.username == username)).first() is None:
            org.create_staff(username, role, DEMO_PASSWORD, store_code=store)
    yield f"staff: admin / clerk, password {DEMO_PASSWORD}"
    for openid, name, principal, bonus in DEMO_MEMBERS:
        member_id = _demo_member(openid, name)
        for bucket, amount in (("principal", principal), ("bonus", bonus)):
            if amount:
                ledger.credit(
                    member_id,
                    amount,
                    bucket=bucket,
                    key=f"demo:{openid}:{bucket}",
                    operator="demo",
                    note="示例数据",
                )
        yield f"member {name}: login code sandbox-{openid}"


def _demo_member(openid: str, name: str) -> int:
    """The demo member behind ``openid``, with its unionid and an openid in each of today's apps."""
    unionid = sandbox_unionid(openid)
    member = db.session.scalars(select(Member).where(Member.unionid == unionid)).first()
    if member is None:
        # Loaded before demo members had a unionid, possibly under another appid: the demo openid is
        # ours, and logging in through that identity with the unionid gives the member its unionid.
        earlier = db.session.scalars(
            select(MemberOpenid)
            .join(Member)
            .where(MemberOpenid.openid == openid, Member.unionid.is_(None))
            .order_by(MemberOpenid.id)
        ).first()
        member = (
            members.login_with_openid(earlier.appid, openid, unionid).member
            if earlier is not None
            else members.create_member(name=name, unionid=unionid)
        )
    for appid in (current_app.config["WECHAT_WXA_APPID"], current_app.config["WECHAT_MP_APPID"]):
        members.login_with_openid(appid, openid, unionid)
    return member.id


def load_recharge_demo() -> Iterator[str]:
    """Three active recharge rules with rewards, so the journey /r -> pay -> balance works at once."""
    from .members.cards import ensure_card_type
    from .recharge import service as recharge

    gold = ensure_card_type("gold", "金卡", rank=2, discount_percent=95)
    coupon = recharge.ensure_coupon_template(
        "满50减10", {"kind": "threshold", "value": 1_000, "threshold_fen": 5_000, "stock": 1_000}
    )
    base = current_app.config["PUBLIC_BASE_URL"]
    for code, fields in (
        ("demo100", {"name": "充100送10", "amount_fen": 10_000, "bonus_fen": 1_000, "points": 100, "sort_order": 10}),
        (
            "demo200",
            {
                "name": "充200送30",
                "amount_fen": 20_000,
                "bonus_fen": 3_000,
                "coupon_template_id": coupon.id,
                "coupon_qty": 1,
                "sort_order": 20,
            },
        ),
        (
            "demo500",
            {"name": "充500送80", "amount_fen": 50_000, "bonus_fen": 8_000, "card_type_id": gold.id, "sort_order": 30},
        ),
    ):
        rule = recharge.ensure_rule(code, fields)
        yield f"recharge rule {rule.name}: {base}/r/{rule.code}"
