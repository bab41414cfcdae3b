"""Referral rewards: a member shares an invitation code (a link); a new member binds it; the inviter
gets the merchant's ``referral_points`` after the new member's first payment.

Rules: one inviter per invitee (UNIQUE ``referral.invitee_id``); only a new member (no payment yet)
can bind a code; no self-referral (also a CHECK) and no loops (the inviter's own chain of inviters may
not contain the invitee, so the graph stays a forest). At most ``referral_monthly_cap`` rewards per
inviter and local month: counted under the inviter's wallet lock, so two first payments at once cannot
both take the last place. The reward is given once: a guarded flip of the referral row from ``bound``
and the points entry's key ``referral:<invitee id>``.
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from .. import hotpath
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..ledger import points
from ..ledger.models import LedgerEntry
from ..models_base import utcnow
from ..org.models import Merchant
from ..transaction import RetryTransaction, transactional
from .models import Referral, ReferralCode

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read out over a counter
CODE_LENGTH = 8
MAX_CHAIN = 10_000  # a chain longer than the member count is a loop in the data: refuse


class ReferralCodeNotFound(NotFound):
    code, message = "referral_code_not_found", "邀请码不存在"


class ReferralRefused(Conflict):
    code, message = "referral_refused", "不能使用该邀请码"


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@transactional
def code_of(member_id: int) -> str:
    """The member's invitation code, made on first ask."""
    found = db.session.get(ReferralCode, member_id)
    if found is not None:
        return found.code
    points.lock_member(member_id)  # also: the member exists
    found = db.session.get(ReferralCode, member_id)
    if found is not None:
        return found.code
    row = ReferralCode(member_id=member_id, code=_new_code(), created_at=utcnow())
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError as error:  # the code was taken (1 in 32^8 per member): try again
        raise RetryTransaction() from error
    return row.code


def link_of(code: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/member?ref={code}"


def has_paid(member_id: int) -> bool:
    """Whether the member has made a payment: a debit or a capture in the ledger (balance, till, or the
    balance part of a mixed payment), or an order paid by WeChat Pay alone."""
    from ..spending.models import OrderPayment

    ledger_paid = select(LedgerEntry.id).where(
        LedgerEntry.member_id == member_id, LedgerEntry.kind.in_(("debit", "capture"))
    )
    wechat_paid = select(OrderPayment.id).where(OrderPayment.member_id == member_id, OrderPayment.status == "paid")
    return any(db.session.scalar(query.limit(1)) is not None for query in (ledger_paid, wechat_paid))


@transactional
def bind(invitee_id: int, code: object) -> Referral:
    """The new member ``invitee_id`` names who invited them. The same code again answers the first
    binding; anything else is refused with a stable code and nothing changes."""
    if not isinstance(code, str) or not code.strip() or len(code.strip()) > 16:
        raise ValidationFailed("邀请码无效", code="invalid_referral_code")
    found = db.session.scalars(select(ReferralCode).where(ReferralCode.code == code.strip().upper())).first()
    if found is None:
        raise ReferralCodeNotFound()
    inviter_id = found.member_id
    # Bindings are rare: one at a time merchant-wide (the merchant row's lock), so two racing bindings
    # cannot close a loop that neither of them sees alone (A takes B's code while B takes A's).
    db.session.execute(select(Merchant.id).order_by(Merchant.id).limit(1).with_for_update()).first()
    points.lock_member(invitee_id)
    earlier = db.session.scalars(select(Referral).where(Referral.invitee_id == invitee_id)).first()
    if earlier is not None:
        if earlier.inviter_id == inviter_id:
            return earlier
        raise ReferralRefused("已绑定过邀请人，不能更换", code="referral_already_bound")
    if inviter_id == invitee_id:
        raise ReferralRefused("不能使用自己的邀请码", code="referral_self")
    if _chain_contains(inviter_id, invitee_id):
        raise ReferralRefused("不能互相邀请（邀请关系会形成循环）", code="referral_loop")
    if has_paid(invitee_id):
        raise ReferralRefused("邀请码仅限尚未消费的新会员使用", code="referral_not_new_member")
    row = Referral(
        inviter_id=inviter_id, invitee_id=invitee_id, status="bound", points=0, created_at=utcnow(), month=None
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError as error:  # a racing copy of this binding committed first
        raise RetryTransaction() from error
    return row


def _chain_contains(start: int, target: int) -> bool:
    """Whether ``target`` is ``start`` or one of the inviters above ``start``."""
    current: int | None = start
    for _ in range(MAX_CHAIN):
        if current is None:
            return False
        if current == target:
            return True
        current = db.session.scalar(select(Referral.inviter_id).where(Referral.invitee_id == current))
    return True


_BOUND = hotpath.Sql("SELECT id, inviter_id FROM referral WHERE invitee_id = ? AND status = 'bound'")


class _Bound(NamedTuple):
    id: int
    inviter_id: int


def reward_on_payment(invitee_id: int) -> int:
    """Called in every payment's transaction (after its ledger entry): on the member's first payment,
    reward the inviter, at most the monthly cap. Returns the points given (0 on every later payment)."""
    referral_t = Referral.__table__
    # every payment asks; almost always no: one statement on the transaction's driver cursor
    found = _BOUND.one(hotpath.cursor(), (invitee_id,))
    if found is None:
        return 0
    row = _Bound(int(found[0]), int(found[1]))
    from .service import settings

    config = settings()
    points.lock_member(int(row.inviter_id))  # the inviter's rewards are counted one payment at a time
    now = utcnow()
    month = points.local_date(now).strftime("%Y-%m")
    given = db.session.scalar(
        select(func.count())
        .select_from(referral_t)
        .where(
            referral_t.c.inviter_id == row.inviter_id,
            referral_t.c.month == month,
            referral_t.c.status == "rewarded",
        )
    )
    capped = int(given or 0) >= config.referral_monthly_cap
    reward = 0 if capped else config.referral_points
    flipped = db.session.execute(
        update(referral_t)
        .where(referral_t.c.id == row.id, referral_t.c.status == "bound")
        .values(status="capped" if capped else "rewarded", points=reward, month=month, rewarded_at=now)
    ).rowcount
    if flipped != 1:  # a racing payment of the same invitee rewarded it first
        return 0
    if reward:
        points.award_points(
            int(row.inviter_id),
            reward,
            key=f"referral:{invitee_id}",
            source="referral",
            reference=f"invitee:{invitee_id}",
        )
    return reward


def summary(member_id: int) -> dict[str, Any]:
    """What the member centre shows: the code and link, whom the member invited, the rewards."""
    code = code_of(member_id)
    rows = db.session.scalars(
        select(Referral).where(Referral.inviter_id == member_id).order_by(Referral.id.desc()).limit(100)
    ).all()
    inviter = db.session.scalar(select(Referral.inviter_id).where(Referral.invitee_id == member_id))
    return {
        "code": code,
        "link": link_of(code),
        "invited_by": inviter,
        "invited": len(rows),
        "rewarded": sum(1 for r in rows if r.status == "rewarded"),
        "points": sum(int(r.points) for r in rows),
        "items": [
            {
                "invitee_id": r.invitee_id,
                "status": r.status,
                "points": r.points,
                "created_at": r.created_at,
                "rewarded_at": r.rewarded_at,
            }
            for r in rows
        ],
    }
