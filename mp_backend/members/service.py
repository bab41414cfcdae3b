"""Members: creation (with their wallet), WeChat identities, status, member tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import tokens
from ..errors import MemberNotFound, Unauthorized, ValidationFailed
from ..extensions import db
from ..ledger import service as ledger
from ..org.service import audit, require_permission
from ..transaction import transactional
from .models import MEMBER_STATUSES, Member, MemberOpenid


@dataclass(frozen=True)
class Login:
    member: Member
    created: bool


def _new_card_no() -> str:
    # 10 random digits behind an 8, then a Luhn check digit (members/activation.py): unguessable enough
    # that a card number alone proves nothing, short enough to read out at the till, and a mistyped
    # digit is caught before a lookup. The UNIQUE constraint settles the (rare) collision.
    from .activation import with_check_digit

    return with_check_digit("8" + "".join(secrets.choice("0123456789") for _ in range(10)))


@transactional
def create_member(
    *, name: str = "", phone: str | None = None, unionid: str | None = None, home_store_id: int | None = None
) -> Member:
    member = Member(
        card_no=_new_card_no(),
        name=name[:64],
        phone=phone or None,
        unionid=unionid or None,
        home_store_id=home_store_id,
    )
    db.session.add(member)
    db.session.flush()
    ledger.open_wallet(member.id)
    return member


def get_member(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        raise MemberNotFound()
    return member


def find_by_openid(appid: str, openid: str) -> Member | None:
    return db.session.scalars(
        select(Member).join(MemberOpenid).where(MemberOpenid.appid == appid, MemberOpenid.openid == openid)
    ).first()


def login_with_openid(appid: str, openid: str, unionid: str | None = None, *, subscribed: bool | None = None) -> Login:
    """Find or create the member behind a WeChat identity; link by unionid across apps.

    Two first logins of one person can race (the mini program opens twice); the UNIQUE (appid, openid)
    lets one win and the other find the winner's member.
    """
    if not appid or not openid:
        raise ValidationFailed("微信身份缺失", code="wechat_identity_missing")
    for _attempt in range(3):
        try:
            return _login_with_openid(appid, openid, unionid, subscribed)
        except IntegrityError:
            continue
    raise ValidationFailed("登录冲突，请重试", code="login_conflict", status=409)


@transactional
def _login_with_openid(appid: str, openid: str, unionid: str | None, subscribed: bool | None) -> Login:
    member = find_by_openid(appid, openid)
    created = False
    if member is None and unionid:
        member = db.session.scalars(select(Member).where(Member.unionid == unionid)).first()
    if member is None:
        member = Member(card_no=_new_card_no(), unionid=unionid or None)
        db.session.add(member)
        db.session.flush()
        ledger.open_wallet(member.id)
        created = True
    if find_by_openid(appid, openid) is None:
        db.session.add(MemberOpenid(member_id=member.id, appid=appid, openid=openid))
    if unionid and member.unionid is None:
        member.unionid = unionid
    if subscribed is not None:
        member.subscribed = subscribed
    db.session.flush()
    return Login(member, created)


@transactional
def set_subscribed(appid: str, openid: str, subscribed: bool) -> Member | None:
    member = find_by_openid(appid, openid)
    if member is not None:
        member.subscribed = subscribed
    return member


@transactional
def set_status(member_id: int, status: str, *, staff_id: int, reason: str, store_id: int | None = None) -> Member:
    """Freeze, report lost, or reactivate a card; a frozen or lost card cannot pay or recharge."""
    if status not in MEMBER_STATUSES:
        raise ValidationFailed("状态必须是 active、frozen 或 lost", code="invalid_status")
    require_permission(staff_id, "manage_members", store_id)
    member = db.session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise MemberNotFound()
    audit(staff_id, f"member_{status}", f"member:{member_id}", reason)
    member.status = status
    ledger.set_frozen(member_id, status != "active")
    return member


@transactional
def withdraw_offline(
    member_id: int,
    amount_fen: int,
    *,
    key: str,
    staff_id: int,
    reason: str,
    store_id: int | None = None,
    reference: str | None = None,
) -> ledger.Posting:
    """Record principal handed back outside the system: permission, ledger row and audit row, one transaction."""
    require_permission(staff_id, "withdraw_offline", store_id)
    posting = ledger.withdraw(
        member_id,
        amount_fen,
        key=key,
        operator=f"staff:{staff_id}",
        reason=reason,
        store_id=store_id,
        reference=reference,
    )
    if not posting.replayed:
        audit(staff_id, "withdraw_offline", f"member:{member_id}", f"{amount_fen} fen: {reason.strip()}")
    return posting


@transactional
def reverse_credit(
    credit_entry_id: int, *, key: str, staff_id: int, reason: str, store_id: int | None = None
) -> ledger.Posting:
    """Correct a mistaken credit with a reversing entry: permission, ledger row and audit row, one transaction.

    The staff member must be allowed at the store the reversal is booked at AND at the store the credit
    was made at (a credit made online, with no store, is HQ's to reverse)."""
    require_permission(staff_id, "reverse_entry", store_id)
    credit = ledger.find_entry(credit_entry_id)
    if credit.store_id != store_id:
        require_permission(staff_id, "reverse_entry", credit.store_id)
    posting = ledger.reverse(credit_entry_id, key=key, operator=f"staff:{staff_id}", reason=reason, store_id=store_id)
    if not posting.replayed:
        audit(staff_id, "reverse_entry", f"entry:{credit_entry_id}", reason.strip())
    return posting


@transactional
def update_profile(member_id: int, *, name: str | None = None) -> Member:
    member = get_member(member_id)
    if name is not None:
        member.name = name.strip()[:64]
    return member


@transactional
def bind_phone(member_id: int, phone: str) -> Member:
    member = get_member(member_id)
    other = db.session.scalars(select(Member).where(Member.phone == phone, Member.id != member_id)).first()
    if other is not None:
        raise ValidationFailed("该手机号已绑定其他会员", code="phone_taken", status=409)
    member.phone = phone
    return member


def issue_member_token(member: Member) -> str:
    return tokens.issue("member", {"member_id": member.id})


def member_from_token(token: str) -> Member:
    payload = tokens.verify("member", token, current_app.config["MEMBER_TOKEN_MAX_AGE"])
    member = db.session.get(Member, payload.get("member_id"))
    if member is None:
        raise Unauthorized("登录凭证无效", code="token_invalid")
    return member
