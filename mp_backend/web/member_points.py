"""Members' points, on the ``member`` blueprint: /api/me/points, the exchange into bonus balance, and
referrals (/api/me/referral)."""

from __future__ import annotations

from ..loyalty import consents, referrals
from ..loyalty import service as loyalty
from .auth import current_member
from .member import blp
from .points_schemas import (
    ExchangeIn,
    ExchangeOut,
    MyPointsOut,
    ReferralBindIn,
    ReferralBindOut,
    ReferralOut,
    SubscribeConsentIn,
    SubscribeConsentList,
)
from .schemas import Error

MEMBER = [{"memberToken": []}]


@blp.route("/me/points", methods=["GET"])
@blp.response(200, MyPointsOut)
@blp.alt_response(401, schema=Error)
@blp.doc(security=MEMBER)
def my_points() -> dict:
    """Points: the balance, the lots (earliest expiry first) and how many expire within 30 days."""
    return loyalty.my_points(current_member().id)


@blp.route("/me/points/exchange", methods=["POST"])
@blp.arguments(ExchangeIn)
@blp.response(201, ExchangeOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(403, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=MEMBER)
def exchange(body: dict) -> dict:
    """Exchange points into bonus balance at the merchant's rate (``request_id`` makes a retry safe)."""
    member = current_member()
    done = loyalty.exchange(member.id, body["points"], key=f"member:{member.id}:{body['request_id']}")
    return {
        "points": done.points,
        "bonus_fen": done.bonus_fen,
        "points_balance": done.points_balance,
        "replayed": done.posting.replayed,
    }


@blp.route("/me/subscriptions", methods=["POST"])
@blp.arguments(SubscribeConsentIn)
@blp.response(201, SubscribeConsentList)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=MEMBER)
def report_subscriptions(body: dict) -> dict:
    """The mini program reports the subscribe-message templates the member accepted (one message each)."""
    return {"items": consents.record(current_member().id, body["accepted"])}


@blp.route("/me/subscriptions", methods=["GET"])
@blp.response(200, SubscribeConsentList)
@blp.alt_response(401, schema=Error)
@blp.doc(security=MEMBER)
def my_subscriptions() -> dict:
    """The member's unused subscribe-message consents, per template."""
    return {"items": consents.unused(current_member().id)}


@blp.route("/me/referral", methods=["GET"])
@blp.response(200, ReferralOut)
@blp.alt_response(401, schema=Error)
@blp.doc(security=MEMBER)
def my_referral() -> dict:
    """The member's invitation code and link, and whom they invited (the reward comes after the new
    member's first payment, at most the merchant's number per month)."""
    return referrals.summary(current_member().id)


@blp.route("/me/referral", methods=["POST"])
@blp.arguments(ReferralBindIn)
@blp.response(201, ReferralBindOut)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.alt_response(404, schema=Error)
@blp.alt_response(409, schema=Error)
@blp.doc(security=MEMBER)
def bind_referral(body: dict) -> dict:
    """A new member names the code they were invited with. The same code again: the same answer;
    own code 409 ``referral_self``; a loop 409 ``referral_loop``; another inviter 409
    ``referral_already_bound``; after a payment 409 ``referral_not_new_member``."""
    row = referrals.bind(current_member().id, body["code"])
    return {"inviter_id": row.inviter_id, "status": row.status}
