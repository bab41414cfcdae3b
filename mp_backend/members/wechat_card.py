"""WeChat's own member card (``WECHAT_CARD_ID``): taking it, activating it, keeping it in step.

- ``user_get_card`` (the member took the card into their WeChat card wallet): the card's code is
  recorded against the member behind the openid (``received``).
- ``submit_membercard_user_info`` (they filled in the activation form): recorded (``submitted``) and,
  after commit, the activation job runs: it reads the form (``card/membercard/userinfo/get``; the
  holder must be the event's sender), activates the member here (``members/activation.py``: the
  same checks as the mini program, a phone of another member is refused and recorded as
  ``rejected``), then activates the WeChat card with the card number as membership number and the
  current balance (fen) and points (``card/membercard/activate``). A repeated event or job activates
  once: the row is claimed, and a card WeChat already shows as ours is not activated again.
- Every later ledger change bumps ``sync_seq`` (``ledger/card_mirror.py``) and queues ``push`` after
  its commit: the push claims the card, reads the *current* balance and points with the ``sync_seq``
  they belong to, sends them (``card/membercard/updateuser``, totals, not deltas), and records the
  ``sync_seq`` it sent. A push that finds ``pushed_seq >= sync_seq`` has nothing to do (a newer push
  already sent a newer value); one that finds another push at work leaves it to that one, which looks
  again before it lets go; a push that died holding the claim is taken over after
  ``WECHAT_CARD_PUSH_LEASE_SECONDS`` (60). Each call to WeChat is a row in ``wechat_card_push``.

A card event for another card id than ours is not acted on and is logged (WeChat still gets its
``success``: it would only resend it).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from ..errors import AppError
from ..extensions import db, jobs
from ..ledger import card_mirror, points
from ..ledger import service as ledger
from ..models_base import utcnow
from ..transaction import transactional
from . import activation
from .models import Member
from .wechat_card_models import WechatCard, WechatCardPush

log = logging.getLogger(__name__)

ACTIVATE_JOB = "jobs.wechat_card.activate"
CARD_EVENTS = ("user_get_card", "submit_membercard_user_info")
MAX_CODE_LENGTH = 64
MAX_PUSH_ROUNDS = 5
card_t = WechatCard.__table__


class PushBusy(Exception):
    """Another push holds the card (under RQ the job raises so that its Retry looks again later)."""


class PushFailed(Exception):
    """WeChat refused or did not answer (under RQ: retried with backoff)."""


def _config_int(name: str, default: int) -> int:
    value = current_app.config.get(name) or os.environ.get(name)
    return int(value) if value not in (None, "") else default


def lease_seconds() -> int:
    return _config_int("WECHAT_CARD_PUSH_LEASE_SECONDS", 60)


def number_field() -> str:
    """``custom_field_value<n>`` that shows the card number (kept current after a replacement), or ''."""
    n = str(current_app.config.get("WECHAT_CARD_NUMBER_FIELD") or os.environ.get("WECHAT_CARD_NUMBER_FIELD") or "")
    return f"custom_field_value{n}" if n in ("1", "2", "3") else ""


def _in_rq_job() -> bool:
    from rq import get_current_job

    return jobs.queue is not None and get_current_job() is not None


# -- events ---------------------------------------------------------------------------------------


def refusal(event: str, openid: str, card_id: str, code: str) -> str | None:
    """Why a verified card event is not acted on (logged), or None: checked before anything is
    looked up or created for its sender."""
    expected = card_mirror.card_id()
    if not expected or card_id != expected:
        log.warning("wechat card: %s for unknown card %r from %s refused", event, card_id[:64], openid)
        return "unknown_card"
    if not code or len(code) > MAX_CODE_LENGTH or not code.isascii() or not code.isalnum():
        log.warning("wechat card: %s with an unreadable code from %s refused", event, openid)
        return "bad_code"
    return None


def on_event(event: str, member_id: int, openid: str, card_id: str, code: str) -> str:
    """A card event from the server URL, verified and not refused. Returns what was done (for the log)."""
    if event == "user_get_card":
        return _record(member_id, openid, card_id, code, submitted=False)
    return _record(member_id, openid, card_id, code, submitted=True)


@transactional
def _record(member_id: int, openid: str, card_id: str, code: str, *, submitted: bool) -> str:
    card = db.session.scalars(select(WechatCard).where(WechatCard.member_id == member_id).with_for_update()).first()
    same_code = db.session.scalars(
        select(WechatCard).where(WechatCard.card_id == card_id, WechatCard.code == code).with_for_update()
    ).first()
    if same_code is not None and same_code.member_id != member_id:
        log.warning("wechat card: code of member %s sent by member %s refused", same_code.member_id, member_id)
        return "other_member"
    if card is not None and card.status == "activated" and card.code == code:
        return "already_activated"
    if card is None:
        card = WechatCard(
            member_id=member_id, card_id=card_id, code=code, openid=openid, status="received", created_at=utcnow()
        )
        db.session.add(card)
    elif card.code != code or card.card_id != card_id:
        # The member deleted the card and took it again: a new code, activated anew.
        card.card_id, card.code, card.status, card.membership_number = card_id, code, "received", None
        card.activated_at, card.pushed_seq, card.push_token, card.push_claimed_at = None, 0, None, None
    card.openid = openid
    if not submitted:
        db.session.flush()
        return "received"
    if card.status in ("received", "rejected"):
        card.status, card.detail = "submitted", ""
    db.session.flush()
    options: dict[str, Any] = {}
    if jobs.queue is not None:
        from rq import Retry

        options["retry"] = Retry(max=5, interval=[5, 30, 120, 600, 1800])
    jobs.enqueue_after_commit(ACTIVATE_JOB, card.id, **options)
    return "submitted"


# -- activation -----------------------------------------------------------------------------------


def activate(wechat_card_id: int, *, now: datetime | None = None) -> str:
    """The activation job: see the module docstring. Returns activated, done, busy, rejected or failed."""
    from wechatpy.exceptions import WeChatClientException

    from ..wechat import cards as wechat_cards

    now = now or utcnow()
    claimed = _claim_activation(wechat_card_id, now)
    if claimed is None:
        return "done"
    if claimed == "busy":
        return "busy"
    card_id, code, openid, member_id = claimed
    try:
        info = wechat_cards.membercard_user_info(card_id, code)
    except WeChatClientException as error:
        return _activation_failed(wechat_card_id, error)
    if str(info.get("openid") or "") != openid:
        return _reject(wechat_card_id, "openid_mismatch", "会员卡领取人与提交人不一致")
    form = wechat_cards.form_fields(info)
    try:
        snapshot = _activate_member(
            wechat_card_id,
            member_id,
            phone=form.get(wechat_cards.FORM_PHONE),
            name=form.get(wechat_cards.FORM_NAME),
            birthday=form.get(wechat_cards.FORM_BIRTHDAY),
        )
    except AppError as error:
        return _reject(wechat_card_id, error.code, error.message)
    if str(info.get("membership_number") or "") == snapshot.membership_number:
        # A job that died after WeChat accepted the activation: do not activate twice; a push sends
        # the current values instead.
        _finish_activation(wechat_card_id, snapshot, sent=None)
        return "activated"
    try:
        wechat_cards.activate_membercard(
            card_id, code, snapshot.membership_number, balance_fen=snapshot.balance_fen, points=snapshot.points
        )
    except WeChatClientException as error:
        _log_push(snapshot, "activate", "failed", error)
        return _activation_failed(wechat_card_id, error)
    _finish_activation(wechat_card_id, snapshot, sent=True)
    return "activated"


@transactional
def _claim_activation(wechat_card_id: int, now: datetime) -> tuple[str, str, str, int] | str | None:
    card = db.session.get(WechatCard, wechat_card_id, with_for_update=True)
    if card is None or card.status in ("activated", "received", "rejected"):
        return None
    if card.status == "activating" and card.claimed_at and card.claimed_at > now - timedelta(seconds=lease_seconds()):
        return "busy"
    card.status, card.claimed_at = "activating", now
    return card.card_id, card.code, card.openid, card.member_id


@dataclass(frozen=True)
class Snapshot:
    wechat_card_id: int
    member_id: int
    membership_number: str
    balance_fen: int
    points: int
    seq: int
    card_id: str
    code: str
    token: str = ""


def _read_snapshot(card: WechatCard, token: str = "") -> Snapshot:
    """The member's available balance and points, with the ``sync_seq`` they belong to: read under the
    card's row lock, which every ledger change must take (its UPDATE) before it can commit."""
    member = db.session.get(Member, card.member_id)
    assert member is not None
    return Snapshot(
        card.id,
        card.member_id,
        member.card_no,
        ledger.get_balance(card.member_id).available_fen,
        points.balance(card.member_id),
        int(card.sync_seq),
        card.card_id,
        card.code,
        token,
    )


@transactional
def _activate_member(wechat_card_id: int, member_id: int, **form: Any) -> Snapshot:
    card = db.session.get(WechatCard, wechat_card_id, with_for_update=True)
    assert card is not None
    member = db.session.get(Member, member_id)
    if member is not None and member.activated_at is None:
        activation.activate(member_id, **form)  # raises for a bad form or a phone of another member
    # An already activated member (in the mini program, say) keeps the details given there.
    return _read_snapshot(card)


@transactional
def _finish_activation(wechat_card_id: int, snapshot: Snapshot, *, sent: bool | None) -> None:
    card = db.session.get(WechatCard, wechat_card_id, with_for_update=True)
    assert card is not None
    card.status, card.claimed_at, card.detail = "activated", None, ""
    card.membership_number, card.activated_at = snapshot.membership_number, utcnow()
    if sent:
        card.pushed_seq, card.pushed_at = snapshot.seq, utcnow()
        card.pushed_balance_fen, card.pushed_points = snapshot.balance_fen, snapshot.points
        _log_push(snapshot, "activate", "sent", None)
    else:
        card.pushed_seq = -1  # what WeChat shows is unknown: the push below sends the current values
    db.session.flush()
    if card.sync_seq > card.pushed_seq:  # changed while WeChat was activating it
        card_mirror.enqueue_push(card.member_id, after_commit=True)


@transactional
def _reject(wechat_card_id: int, code: str, message: str) -> str:
    card = db.session.get(WechatCard, wechat_card_id, with_for_update=True)
    assert card is not None
    card.status, card.claimed_at, card.detail = "rejected", None, f"{code}: {message}"[:255]
    log.warning("wechat card %s of member %s not activated: %s", card.code, card.member_id, code)
    return "rejected"


def _activation_failed(wechat_card_id: int, error: Exception) -> str:
    _release_activation(wechat_card_id, f"{getattr(error, 'errcode', None)}: {getattr(error, 'errmsg', error)}")
    if _in_rq_job():
        raise PushFailed(str(error)) from error
    return "failed"


@transactional
def _release_activation(wechat_card_id: int, detail: str) -> None:
    db.session.execute(
        update(card_t)
        .where(card_t.c.id == wechat_card_id, card_t.c.status == "activating")
        .values(status="submitted", claimed_at=None, detail=detail[:255])
    )


# -- pushes ---------------------------------------------------------------------------------------


def push(member_id: int, *, now: datetime | None = None) -> str:
    """Send the member's current balance and points to their WeChat card, if it is behind. Returns
    sent, current (nothing newer to send), inactive (no activated card), busy or failed."""
    from wechatpy.exceptions import WeChatClientException

    from ..wechat import cards as wechat_cards

    outcome = "current"
    for _round in range(MAX_PUSH_ROUNDS):  # a change that lands while we send is sent next round
        claimed = _claim_push(member_id, now or utcnow())
        if isinstance(claimed, str):
            if claimed == "busy" and outcome != "sent" and _in_rq_job():
                raise PushBusy(f"member {member_id}: another push is at work")
            return outcome if claimed == "current" else claimed
        try:
            wechat_cards.update_membercard(
                claimed.card_id,
                claimed.code,
                balance_fen=claimed.balance_fen,
                points=claimed.points,
                **_number_update(claimed),
            )
        except WeChatClientException as error:
            _finish_push(claimed, error)
            if _in_rq_job():
                raise PushFailed(str(error)) from error
            return "failed"
        _finish_push(claimed, None)
        outcome = "sent"
    card_mirror.enqueue_push(member_id, after_commit=False)  # still changing: a fresh job goes on
    return outcome


def _number_update(snapshot: Snapshot) -> dict[str, str]:
    field = number_field()
    return {field: snapshot.membership_number} if field else {}


@transactional
def _claim_push(member_id: int, now: datetime) -> Snapshot | str:
    card = db.session.scalars(select(WechatCard).where(WechatCard.member_id == member_id).with_for_update()).first()
    if card is None or card.status != "activated" or not card_mirror.card_id():
        return "inactive"
    if card.pushed_seq >= card.sync_seq:
        return "current"
    if card.push_claimed_at is not None and card.push_claimed_at > now - timedelta(seconds=lease_seconds()):
        return "busy"
    token = secrets.token_hex(8)
    card.push_token, card.push_claimed_at = token, now
    return _read_snapshot(card, token)


@transactional
def _finish_push(snapshot: Snapshot, error: Any) -> None:
    card = db.session.get(WechatCard, snapshot.wechat_card_id, with_for_update=True)
    assert card is not None
    ours = card.push_token == snapshot.token
    if ours:
        card.push_token, card.push_claimed_at = None, None
    if error is None:
        if ours:
            card.pushed_seq = max(card.pushed_seq, snapshot.seq)
            card.pushed_balance_fen, card.pushed_points, card.pushed_at = (
                snapshot.balance_fen,
                snapshot.points,
                utcnow(),
            )
        else:
            # Our claim lapsed and another push took over; ours may have reached WeChat after a newer
            # value: have the current values sent again.
            card.pushed_seq = -1
            card_mirror.enqueue_push(card.member_id, after_commit=True)
    _log_push(snapshot, "update", "sent" if error is None else "failed", error)


def _log_push(snapshot: Snapshot, action: str, status: str, error: Any) -> None:
    errcode = getattr(error, "errcode", None)
    db.session.add(
        WechatCardPush(
            member_id=snapshot.member_id,
            wechat_card_id=snapshot.wechat_card_id,
            action=action,
            seq=snapshot.seq,
            balance_fen=snapshot.balance_fen,
            points=snapshot.points,
            status=status,
            errcode=int(errcode) if isinstance(errcode, int) or str(errcode or "").lstrip("-").isdigit() else None,
            detail=("" if error is None else f"{getattr(error, 'errmsg', None) or error}")[:255],
            created_at=utcnow(),
        )
    )


def card_replaced(member_id: int) -> None:
    """In the replacement's transaction: the WeChat card (if any) is sent the member's values again,
    with the new card number in ``WECHAT_CARD_NUMBER_FIELD`` when one is configured."""
    card_mirror.changed((member_id,))


# -- the merchant's view ----------------------------------------------------------------------------


def card_of_member(member_id: int) -> WechatCard | None:
    return db.session.scalars(select(WechatCard).where(WechatCard.member_id == member_id)).first()


def push_log(*, member_id: int | None = None, limit: int = 50, before_id: int | None = None) -> list[WechatCardPush]:
    query = select(WechatCardPush).order_by(WechatCardPush.id.desc()).limit(min(max(limit, 1), 200))
    if member_id:
        query = query.where(WechatCardPush.member_id == member_id)
    if before_id:
        query = query.where(WechatCardPush.id < before_id)
    return list(db.session.scalars(query))
