"""Member-card activation: the member gives phone, name and birthday, and holds a card number.

The mini program and the H5 pages call ``activate`` (``POST /api/me/activate``); a WeChat member card's
activation form ends up here too (``members/wechat_card.py``). A phone number belongs to one member:
the UNIQUE ``member.phone`` settles two members activating the same number at once (one wins, the
other is ``409 phone_taken`` and nothing of theirs changes), not only the read before it.

Card numbers are 12 digits: ``8``, ten random digits, and a Luhn check digit, so a till or a clerk who
mistypes one digit (or swaps two neighbours) is told at once. A member created before check digits
(whose number fails the check) gets a new number on activation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, MemberNotFound, ValidationFailed
from ..extensions import db
from ..models_base import utcnow
from ..transaction import transactional
from .models import Member

CARD_NO_LENGTH = 12
MAINLAND_MOBILE = re.compile(r"1[3-9][0-9]{9}")
NAME_MAX_LENGTH = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EARLIEST_BIRTHDAY = date(1900, 1, 1)


def luhn_digit(payload: str) -> str:
    """The Luhn check digit of a string of digits (the one bank cards use)."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:  # every second digit from the right of the payload is doubled
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def with_check_digit(payload: str) -> str:
    return payload + luhn_digit(payload)


def card_no_valid(card_no: object) -> bool:
    """12 ASCII digits whose last one is the Luhn check digit of the others."""
    return (
        isinstance(card_no, str)
        and len(card_no) == CARD_NO_LENGTH
        and card_no.isascii()
        and card_no.isdigit()
        and luhn_digit(card_no[:-1]) == card_no[-1]
    )


def check_phone(value: object) -> str:
    """A mainland mobile number, 11 digits (spaces, dashes and a +86 prefix are tolerated)."""
    text = re.sub(r"[\s-]", "", value) if isinstance(value, str) else ""
    if text.startswith("+86"):
        text = text[3:]
    if not (text.isascii() and MAINLAND_MOBILE.fullmatch(text)):
        raise ValidationFailed("请填写正确的 11 位手机号", code="invalid_phone")
    return text


def check_name(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > NAME_MAX_LENGTH or _CONTROL.search(text) or text.isdigit():
        raise ValidationFailed(f"请填写姓名（1-{NAME_MAX_LENGTH} 个字）", code="invalid_name")
    return text


def check_birthday(value: object, *, today: date | None = None) -> date:
    """``YYYY-MM-DD`` (or a date), from 1900-01-01 up to today in the merchant's time zone."""
    from ..ledger.points import local_date

    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            value = None
    today = today or local_date(utcnow())
    if not isinstance(value, date) or not EARLIEST_BIRTHDAY <= value <= today:
        raise ValidationFailed("请填写正确的生日（YYYY-MM-DD，不晚于今天）", code="invalid_birthday")
    return value


@dataclass(frozen=True)
class Activation:
    member: Member
    replayed: bool  # already activated with the same details: nothing changed


class PhoneTaken(Conflict):
    code, message = "phone_taken", "该手机号已绑定其他会员"


class AlreadyActivated(Conflict):
    code, message = "already_activated", "会员卡已激活，如需修改资料请联系门店"


@transactional
def activate(member_id: int, *, phone: object, name: object, birthday: object) -> Activation:
    """Activate the member's card: all checks first, then phone, name, birthday and the card number in
    one transaction. The same details again answer as before (a retried request); other details for
    an activated card are ``409 already_activated``; a phone of another member ``409 phone_taken``."""
    phone, name, birthday = check_phone(phone), check_name(name), check_birthday(birthday)
    member = db.session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise MemberNotFound()
    if member.activated_at is not None:
        if (member.phone, member.name, member.birthday) == (phone, name, birthday):
            return Activation(member, replayed=True)
        raise AlreadyActivated()
    if _phone_owner(phone, member_id) is not None:
        raise PhoneTaken()
    try:
        with db.session.begin_nested():
            member.phone, member.name, member.birthday = phone, name, birthday
            member.activated_at = utcnow()
            if not card_no_valid(member.card_no):
                from .service import _new_card_no

                member.card_no = _new_card_no()
            db.session.flush()
    except IntegrityError as error:
        # Another member took the number between the read above and this write (their transaction
        # committed while ours waited on the UNIQUE index): the database decides, and says who.
        if "phone" in str(error.orig) or _phone_owner(phone, member_id) is not None:
            raise PhoneTaken() from error
        raise
    return Activation(member, replayed=False)


def _phone_owner(phone: str, member_id: int) -> int | None:
    return db.session.scalars(select(Member.id).where(Member.phone == phone, Member.id != member_id)).first()
