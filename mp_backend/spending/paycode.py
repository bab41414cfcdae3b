"""The member's payment code (DESIGN.md section 5): 18 digits, single use, about a minute.

The member centre shows it as a QR code and digits; the till scans it and charges it through the open
API as ``{"member": {"pay_code": ...}}``. One row per member: a new code replaces the old one. Only the
code's SHA-256 is stored, so the table (or a dump of it) gives no usable code away. A code is consumed
by one guarded ``UPDATE ... WHERE used_at IS NULL AND expires_at > now`` inside the charge's own
transaction: two tills racing for one code get one row each way, and a charge that fails (balance
too low) leaves the code usable for a second try.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import Conflict, MemberFrozen, NotFound, ValidationFailed
from ..extensions import db
from ..models_base import ExactString, created_at_column, utcnow
from ..transaction import RetryTransaction, transactional

CODE_LENGTH = 18
CODE_PREFIX = "68"  # tells a till that this is our member code, not a WeChat Pay (10-15) or Alipay code
TTL_SECONDS = 60


class PayCode(db.Model):  # type: ignore[name-defined]
    __tablename__ = "pay_code"
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id"), primary_key=True, autoincrement=False)
    code_hash: Mapped[str] = mapped_column(ExactString(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()


class PayCodeInvalid(NotFound):
    code, message = "pay_code_invalid", "付款码无效（已刷新或不存在），请会员刷新后重新出示"


class PayCodeExpired(Conflict):
    code, message = "pay_code_expired", "付款码已过期，请会员刷新后重新出示"


class PayCodeUsed(Conflict):
    code, message = "pay_code_used", "付款码已使用，请会员刷新后重新出示"


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_in: int


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _check_format(code: object) -> str:
    if not isinstance(code, str) or len(code) != CODE_LENGTH or not (code.isascii() and code.isdigit()):
        raise ValidationFailed("付款码必须是 18 位数字", code="invalid_pay_code")
    return code


@transactional
def issue(member_id: int) -> IssuedCode:
    """A fresh code for the member, replacing any earlier one (used or not)."""
    from ..members.models import Member

    status = db.session.scalar(select(Member.status).where(Member.id == member_id))
    if status is None:
        raise NotFound("会员不存在", code="member_not_found")
    if status != "active":
        raise MemberFrozen()
    # 16 random digits (53 bits) behind the prefix: guessing a live code within its minute is hopeless,
    # and every guess needs a signed request.
    code = CODE_PREFIX + f"{secrets.randbelow(10 ** (CODE_LENGTH - len(CODE_PREFIX))):016d}"
    now = utcnow()
    values = {"code_hash": _hash(code), "expires_at": now + timedelta(seconds=TTL_SECONDS), "used_at": None}
    t = PayCode.__table__
    try:
        if db.session.execute(update(t).where(t.c.member_id == member_id).values(**values)).rowcount == 0:
            db.session.execute(insert(t).values(member_id=member_id, created_at=now, **values))
    except IntegrityError as error:  # a racing first code of the same member, or (never seen) a collision
        raise RetryTransaction() from error
    return IssuedCode(code, TTL_SECONDS)


def member_of(code: object) -> int:
    """The member a live code belongs to, without consuming it (the till's lookup)."""
    t = PayCode.__table__
    row = db.session.execute(
        select(t.c.member_id, t.c.expires_at, t.c.used_at).where(t.c.code_hash == _hash(_check_format(code)))
    ).first()
    _raise_unless_live(row)
    assert row is not None
    return int(row[0])


def consume(code: object) -> int:
    """Use the code up, in the caller's transaction; the member it belonged to. Exactly once, whatever the race."""
    digest = _hash(_check_format(code))
    t = PayCode.__table__
    now = utcnow()
    guarded = (
        update(t)
        .where(t.c.code_hash == digest, t.c.used_at.is_(None), t.c.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if db.session.execute(guarded).rowcount == 1:
        member_id = db.session.scalar(select(t.c.member_id).where(t.c.code_hash == digest))
        return int(member_id)  # type: ignore[arg-type]
    row = db.session.execute(select(t.c.member_id, t.c.expires_at, t.c.used_at).where(t.c.code_hash == digest)).first()
    _raise_unless_live(row, now)
    raise PayCodeUsed()  # consumed between the two statements: the other till won


def _raise_unless_live(row: object, now: datetime | None = None) -> None:
    if row is None:
        raise PayCodeInvalid()
    _member_id, expires_at, used_at = row  # type: ignore[misc]
    if used_at is not None:
        raise PayCodeUsed()
    if expires_at <= (now or utcnow()):
        raise PayCodeExpired()
