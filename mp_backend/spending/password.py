"""The member's 6-digit pay password: set, change, reset, and the check before a balance payment.

- Hashed with argon2 (the staff hasher's parameters: ``org.service``; argon2's cheapest profile in tests).
- Five wrong tries lock balance payment for 30 minutes. The count is a column, raised by one guarded
  ``UPDATE`` that also sets the lock on the fifth try, so restarts, several web processes and
  concurrent tries all count (the database decides, never a read-modify-write in Python). A right
  password resets the count, but only while no lock is on (the same guard).
- Reset (a forgotten password) re-verifies the member through WeChat login: the mini program sends a
  fresh ``wx.login()`` code with the new password; the code is exchanged at WeChat (jscode2session,
  single use, valid about five minutes) and must name this member's openid in the mini program. The
  member token alone is not enough: it lives for days and may have leaked.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import case, select, update

from ..errors import AppError, Conflict, Forbidden, ValidationFailed
from ..extensions import db
from ..members.models import MemberOpenid
from ..models_base import utcnow
from ..org.service import _hasher
from ..transaction import transactional
from ..wechat import clients as wechat_clients
from .models import MAX_FAILED_TRIES, PayPassword

LOCK_MINUTES = 30
password_t = PayPassword.__table__
_PATTERN = re.compile(r"\A[0-9]{6}\Z")


class InvalidPayPassword(ValidationFailed):
    code, message = "invalid_pay_password", "支付密码必须是 6 位数字"


class PayPasswordNotSet(Conflict):
    code, message = "pay_password_not_set", "请先设置支付密码"


class PayPasswordAlreadySet(Conflict):
    code, message = "pay_password_already_set", "已设置支付密码，如需修改请提供原密码"


class WrongPayPassword(Forbidden):
    code, message = "wrong_pay_password", "支付密码错误"


class PayPasswordLocked(AppError):
    status, code, message = 423, "pay_password_locked", "支付密码错误次数过多，余额支付已锁定"


class ReverifyFailed(Forbidden):
    code, message = "wechat_reverify_failed", "微信身份验证未通过，请在小程序中重新进入后再试"


def _check_format(password: object) -> str:
    if not isinstance(password, str) or not _PATTERN.match(password):
        raise InvalidPayPassword()
    if len(set(password)) == 1 or password in ("123456", "654321", "012345", "543210"):
        raise InvalidPayPassword("支付密码过于简单，请不要使用连续或相同的数字", code="pay_password_too_simple")
    return password


def has_password(member_id: int) -> bool:
    return db.session.get(PayPassword, member_id) is not None


@transactional
def set_password(member_id: int, password: str) -> None:
    """The first pay password. Setting it again needs the old one (``change_password``) or a reset."""
    _check_format(password)
    if db.session.get(PayPassword, member_id, with_for_update=True) is not None:
        raise PayPasswordAlreadySet()
    db.session.add(
        PayPassword(member_id=member_id, password_hash=_hasher().hash(password), failed_count=0, updated_at=utcnow())
    )


def change_password(member_id: int, old_password: str, new_password: str) -> None:
    """Change with the old password; a wrong old password counts as a wrong try (and may lock)."""
    _check_format(new_password)
    verify(member_id, old_password)
    _store(member_id, new_password)


def reset_password(member_id: int, wxa_code: str, new_password: str) -> None:
    """Forgotten password: re-verify through a fresh mini-program login code, then set the new one.
    Clears the count and a lock (the member has just proved who they are to WeChat)."""
    _check_format(new_password)
    if not isinstance(wxa_code, str) or not wxa_code or len(wxa_code) > 128:
        raise ReverifyFailed()
    session = wechat_clients.jscode2session(wxa_code)
    appid = current_app.config["WECHAT_WXA_APPID"]
    linked = db.session.scalars(
        select(MemberOpenid.member_id).where(MemberOpenid.appid == appid, MemberOpenid.openid == session["openid"])
    ).first()
    db.session.rollback()
    if linked != member_id:
        raise ReverifyFailed()
    _store(member_id, new_password, create=True)


@transactional
def _store(member_id: int, password: str, *, create: bool = False) -> None:
    row = db.session.get(PayPassword, member_id, with_for_update=True)
    hashed = _hasher().hash(password)
    if row is None:
        if not create:
            raise PayPasswordNotSet()
        db.session.add(PayPassword(member_id=member_id, password_hash=hashed, failed_count=0, updated_at=utcnow()))
        return
    row.password_hash, row.failed_count, row.locked_until, row.updated_at = hashed, 0, None, utcnow()


def verify(member_id: int, password: object) -> None:
    """Refuse a payment unless ``password`` is the member's pay password and balance payment is not locked.

    Runs (and commits) before the payment's own transaction, so a wrong try is counted even though the
    payment is refused. Raises ``pay_password_locked`` (423, with ``locked_until``) or
    ``wrong_pay_password`` (403, with ``remaining_tries``)."""
    row = db.session.get(PayPassword, member_id, populate_existing=True)
    if row is None:
        db.session.rollback()
        raise PayPasswordNotSet()
    stored_hash, locked_until = row.password_hash, row.locked_until
    db.session.rollback()
    now = utcnow()
    if locked_until is not None and locked_until > now:
        raise _locked(locked_until)
    try:
        ok = isinstance(password, str) and len(password) <= 64 and _hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if ok:
        if not _reset_count(member_id, now):
            raise _locked(_locked_until(member_id))  # locked by concurrent wrong tries meanwhile
        return
    count, until = _count_failure(member_id, now)
    if until is not None and until > now:
        raise _locked(until)
    remaining = MAX_FAILED_TRIES - count
    raise WrongPayPassword(f"支付密码错误，还可以再试 {remaining} 次", details={"remaining_tries": remaining})


def _locked(until: datetime | None) -> PayPasswordLocked:
    until = until or utcnow()
    china = until + timedelta(hours=8)
    return PayPasswordLocked(
        f"支付密码错误次数过多，余额支付已锁定，请于 {china:%H:%M}（北京时间）后再试，或通过微信验证重置支付密码",
        details={"locked_until": until.isoformat() + "Z"},
    )


@transactional
def _reset_count(member_id: int, now: datetime) -> bool:
    done = db.session.execute(
        update(password_t)
        .where(
            password_t.c.member_id == member_id,
            (password_t.c.locked_until.is_(None)) | (password_t.c.locked_until <= now),
        )
        .values(failed_count=0, locked_until=None)
    ).rowcount
    return done == 1


@transactional
def _count_failure(member_id: int, now: datetime) -> tuple[int, datetime | None]:
    """One wrong try: count it; the fifth sets the lock and restarts the count. One statement, guarded
    by "not locked now" (a try during a lock counts nothing). ``locked_until`` is assigned first: MySQL
    evaluates SET assignments left to right, each seeing the values set before it."""
    reached = password_t.c.failed_count + 1 >= MAX_FAILED_TRIES
    db.session.execute(
        update(password_t)
        .where(
            password_t.c.member_id == member_id,
            (password_t.c.locked_until.is_(None)) | (password_t.c.locked_until <= now),
        )
        .ordered_values(
            (
                password_t.c.locked_until,
                case((reached, now + timedelta(minutes=LOCK_MINUTES)), else_=password_t.c.locked_until),
            ),
            (password_t.c.failed_count, case((reached, 0), else_=password_t.c.failed_count + 1)),
        )
    )
    row = db.session.execute(
        select(password_t.c.failed_count, password_t.c.locked_until).where(password_t.c.member_id == member_id)
    ).one()
    if row.locked_until is not None and row.locked_until > now:
        return MAX_FAILED_TRIES, row.locked_until
    return int(row.failed_count), None


def _locked_until(member_id: int) -> datetime | None:
    until = db.session.scalar(select(password_t.c.locked_until).where(password_t.c.member_id == member_id))
    db.session.rollback()
    return until
