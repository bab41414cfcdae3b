"""Points expiry reminders and birthday greetings: the notification log (``points_reminder``) and the
jobs that fill it and send it.

Expiry reminders go out 30, 15 and 3 days before a member's points expire, one per member, expiry
date and offset (UNIQUE); birthday greetings once per member and year (the UNIQUE ``client_msg_id``
``bday-<member>-<year>``), with the merchant's birthday points (idempotency key ``birthday:<member>:
<year>``). A member who accepted a mini-program subscribe message for the template
(``subscribe_consent``) gets one, using up that consent; everyone else an official-account template
message.

``plan`` / ``plan_birthdays`` insert the log rows in batches (a run that dies half-way is finished by
the next one: the UNIQUE key makes a second insert a no-op) and ``enqueue_due`` queues the rows still to
send, a batch at a time (one Redis pipeline each); ``send`` claims one row, sends it (a template message
with ``client_msg_id`` = the row's) and records WeChat's answer:

- 43004 (not subscribed) / 43019 (blocked): ``gave_up``, never retried;
- 43101 on a subscribe message (the consent is used up at WeChat): the consent is marked ``refused``
  and the reminder falls back to the official account (or gives up when there is none);
- 45009 / 45047 (quota, rate): ``retry``; under RQ the job raises so that its ``Retry`` backs off;
- 40001 / 42001 (token): the wechatpy client refreshes the token and retries once by itself;
- anything else: ``failed``; the next daily run tries again.

A job killed between WeChat's acceptance and the record leaves the row ``sending``; after
``POINTS_REMINDER_RECLAIM_SECONDS`` a later run sends it again with the same ``client_msg_id``, which
WeChat deduplicates: the member gets the message once. A subscribe message has no such id, so a
``sending`` subscribe row left by a dead job is not sent again (``gave_up``, at most once).
"""

from __future__ import annotations

import calendar
import logging
import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db, jobs
from ..ledger import points
from ..members.models import MemberOpenid
from ..models_base import utcnow
from ..transaction import transactional
from .models import PointsReminder, SubscribeConsent

log = logging.getLogger(__name__)

OFFSETS = (30, 15, 3)
JOB = "jobs.points.send_reminder"
MANY_JOB = "jobs.points.send_reminders"
SEND_CHUNK = 100  # reminders per queued job: a few seconds of WeChat calls, one Redis job
GIVE_UP = {43004: "用户未关注公众号", 43019: "用户已将公众号拉黑", 43101: "用户未订阅或订阅次数已用完"}
RATE_LIMITED = {45009, 45047}
WXA_PAGE = "pages/points/index"  # the mini program's points page, opened from the message
reminder_t = PointsReminder.__table__
consent_t = SubscribeConsent.__table__


class RateLimited(Exception):
    """WeChat said 45009/45047: RQ's Retry runs the job again later."""


def _config(name: str, default: str) -> str:
    return str(current_app.config.get(name) or os.environ.get(name) or default)


def template_id() -> str:
    return _config("WECHAT_TEMPLATE_POINTS_EXPIRY", "")


def birthday_template_id() -> str:
    return _config("WECHAT_TEMPLATE_BIRTHDAY", "")


def subscribe_template_id(kind: str) -> str:
    """The mini program's subscribe-message template for ``kind`` (none: official account only)."""
    name = "WECHAT_SUBSCRIBE_TEMPLATE_POINTS_EXPIRY" if kind == "expiry" else "WECHAT_SUBSCRIBE_TEMPLATE_BIRTHDAY"
    return _config(name, "")


def batch_size_setting() -> int:
    return max(1, int(_config("POINTS_JOB_BATCH_SIZE", "1000")))


def reclaim_seconds() -> int:
    return int(_config("POINTS_REMINDER_RECLAIM_SECONDS", "600"))


def offset_for(days_left: int) -> int | None:
    """The reminder a lot that expires in ``days_left`` days is due: 30 for 16-30, 15 for 4-15, 3 for 0-3."""
    due = None
    for offset in sorted(OFFSETS):
        if days_left <= offset:
            return offset
    return due


def plan(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Log a reminder for every member whose points expire within 30 days and who has not had this
    one, ``batch_size`` members per transaction; returns how many rows this run added."""
    now = now or utcnow()
    batch_size = batch_size or batch_size_setting()
    today = points.local_date(now)
    horizon = points.local_midnight_utc(today + timedelta(days=max(OFFSETS) + 1))
    lot_t = points.lot_t
    last_member, added = 0, 0
    top = db.session.scalar(select(func.max(lot_t.c.member_id)))
    db.session.rollback()
    while top is not None and last_member < top:
        rows = db.session.execute(
            select(lot_t.c.member_id, lot_t.c.expires_at, func.sum(lot_t.c.remaining))
            .where(
                lot_t.c.member_id > last_member,
                lot_t.c.member_id <= last_member + batch_size,
                lot_t.c.remaining > 0,
                lot_t.c.status == "available",
                lot_t.c.expires_at > now,
                lot_t.c.expires_at <= horizon,
            )
            .group_by(lot_t.c.member_id, lot_t.c.expires_at)
        ).all()
        db.session.rollback()
        wanted: dict[tuple[int, date, int], int] = {}
        for member_id, expires_at, remaining in rows:
            last_day = points.last_valid_day(expires_at)
            offset = offset_for((last_day - today).days)
            if offset is not None:
                k = (int(member_id), last_day, offset)
                wanted[k] = wanted.get(k, 0) + int(remaining)
        if wanted:
            added += _insert(
                [_row(m, "expiry", d, o, p, f"ptsr-{m}-{d:%Y%m%d}-{o}", now) for (m, d, o), p in wanted.items()],
                now,
            )
        last_member += batch_size
    return added


def _row(member_id: int, kind: str, day: date, offset: int, points_count: int, client_msg_id: str, now: datetime):  # type: ignore[no-untyped-def]
    return {
        "member_id": member_id,
        "kind": kind,
        "expiry_date": day,
        "offset_days": offset,
        "points": points_count,
        "status": "pending",
        "client_msg_id": client_msg_id,
        "channel": "mp",
        "attempts": 0,
        "detail": "",
        "created_at": now,
    }


@transactional
def _insert(wanted: list[dict[str, Any]], now: datetime) -> int:
    """Insert the rows not logged yet; returns how many."""
    # The client_msg_id names the row's key (member, date and offset; member and year for birthdays),
    # so looking the ids up on their UNIQUE index finds what an earlier run logged.
    seen = set(
        db.session.scalars(
            select(reminder_t.c.client_msg_id).where(
                reminder_t.c.client_msg_id.in_([r["client_msg_id"] for r in wanted])
            )
        )
    )
    fresh = [row for row in wanted if row["client_msg_id"] not in seen]
    if not fresh:
        return 0
    try:
        with db.session.begin_nested():
            db.session.execute(reminder_t.insert(), fresh)
        return len(fresh)
    except IntegrityError:  # a concurrent run inserted some: insert the rest one by one
        added = 0
        for row in fresh:
            try:
                with db.session.begin_nested():
                    db.session.execute(reminder_t.insert(), [row])
                added += 1
            except IntegrityError:
                continue
        return added


def _due_where(now: datetime):  # type: ignore[no-untyped-def]
    stale = now - timedelta(seconds=reclaim_seconds())
    return reminder_t.c.status.in_(("pending", "retry", "failed")) | (
        (reminder_t.c.status == "sending") & (reminder_t.c.claimed_at <= stale)
    )


def due_batches(*, now: datetime | None = None, batch_size: int | None = None) -> Iterator[list[int]]:
    """Rows to (re)send, ``batch_size`` ids at a time by id: pending, retry, failed, and sending rows
    abandoned longer than the reclaim time. Never the whole list at once (memory stays flat)."""
    now = now or utcnow()
    batch_size = batch_size or batch_size_setting()
    after = 0
    while True:
        ids = list(
            db.session.scalars(
                select(reminder_t.c.id)
                .where(_due_where(now), reminder_t.c.id > after)
                .order_by(reminder_t.c.id)
                .limit(batch_size)
            )
        )
        db.session.rollback()
        if not ids:
            return
        yield ids
        after = ids[-1]


def due_ids(*, now: datetime | None = None) -> list[int]:
    return [i for batch in due_batches(now=now) for i in batch]


def enqueue_due(ids: list[int]) -> None:
    """One RQ job per ``SEND_CHUNK`` reminders (``send_many``; its ``job_id`` named by the ids), the
    batch's jobs in one Redis pipeline; in process (no Redis) they are sent at once."""
    if jobs.queue is None:
        for reminder_id in ids:
            jobs.enqueue(JOB, reminder_id)
        return
    from rq import Retry

    queue = jobs.queue
    retry = Retry(max=5, interval=[60, 300, 900, 1800, 3600])
    chunks = [ids[i : i + SEND_CHUNK] for i in range(0, len(ids), SEND_CHUNK)]
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(
            [
                queue.prepare_data(
                    MANY_JOB, (chunk,), job_id=f"points-reminders-{chunk[0]}-{chunk[-1]}", retry=retry, timeout=900
                )
                for chunk in chunks
            ],
            pipeline=pipe,
        )
        pipe.execute()


def send_many(ids: list[int], *, now: datetime | None = None) -> dict[str, int]:
    """Send each reminder of a queued chunk (each at most once, see ``send``). If WeChat rate-limited any,
    the job raises at the end, so that RQ's ``Retry`` runs the chunk again later: what was sent, or
    given up, is skipped then."""
    counts: dict[str, int] = {}
    limited: RateLimited | None = None
    for reminder_id in ids:
        try:
            status = send(reminder_id, now=now)
        except RateLimited as error:  # under RQ: recorded as "retry"; the others in the chunk still go
            status, limited = "retry", error
        counts[status] = counts.get(status, 0) + 1
    if limited is not None:
        raise limited
    return counts


def enqueue_all_due(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    count = 0
    for ids in due_batches(now=now, batch_size=batch_size):
        enqueue_due(ids)
        count += len(ids)
    return count


# ---------------------------------------------------------------------------------------------------
# Birthdays


def birthdays_on(day: date) -> list[tuple[int, int]]:
    """(month, day) pairs greeted on ``day``: its own, and 29 February on 28 February of a year without one."""
    pairs = [(day.month, day.day)]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        pairs.append((2, 29))
    return pairs


def plan_birthdays(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Today's birthdays (the merchant's day): the birthday points, once per member and year (their
    idempotency key), and one greeting per member and year (the UNIQUE ``client_msg_id``). Returns
    how many greetings this run added."""
    from ..members.models import Member
    from .service import settings

    now = now or utcnow()
    batch_size = batch_size or batch_size_setting()
    today = points.local_date(now)
    gift = int(settings().birthday_points or 0)
    member_t = Member.__table__
    month, day = func.extract("month", member_t.c.birthday), func.extract("day", member_t.c.birthday)
    on_day = or_(*[(month == m) & (day == d) for m, d in birthdays_on(today)])
    after, added = 0, 0
    while True:
        members = list(
            db.session.scalars(
                select(member_t.c.id)
                .where(member_t.c.birthday.is_not(None), member_t.c.status == "active", on_day, member_t.c.id > after)
                .order_by(member_t.c.id)
                .limit(batch_size)
            )
        )
        db.session.rollback()
        if not members:
            return added
        for member_id in members:
            if gift:
                points.award_points(
                    member_id,
                    gift,
                    key=f"birthday:{member_id}:{today.year}",
                    source="birthday",
                    reference=f"birthday {today.year}",
                )
        added += _insert([_row(m, "birthday", today, 0, gift, f"bday-{m}-{today.year}", now) for m in members], now)
        after = members[-1]


def run_birthdays(*, now: datetime | None = None) -> dict[str, int]:
    """The daily birthday job: points and greetings for today's birthdays, then queue what is due."""
    now = now or utcnow()
    added = plan_birthdays(now=now)
    return {"greetings": added, "queued": enqueue_all_due(now=now)}


# ---------------------------------------------------------------------------------------------------
# Sending


@transactional
def _claim(reminder_id: int, now: datetime) -> dict[str, Any] | str:
    row = db.session.execute(select(reminder_t).where(reminder_t.c.id == reminder_id).with_for_update()).first()
    if row is None:
        return "missing"
    stale = now - timedelta(seconds=reclaim_seconds())
    if row.status in ("sent", "gave_up", "skipped"):
        return "done"
    if row.status == "sending" and row.claimed_at is not None and row.claimed_at > stale:
        return "busy"
    if row.status == "sending" and row.channel == "wxa":
        # a subscribe message carries no client_msg_id: WeChat may have delivered it, so never again
        db.session.execute(
            update(reminder_t)
            .where(reminder_t.c.id == reminder_id)
            .values(status="gave_up", detail="订阅消息发送中断，结果未知：为免重复不再重发")
        )
        return "gave_up"
    consent = _take_consent(row, now) if row.status != "sending" else None
    values: dict[str, Any] = {"attempts": row.attempts + 1, "claimed_at": now}
    if consent is not None:
        values.update(
            status="sending", detail="", channel="wxa", openid=consent["openid"], template_id=consent["template_id"]
        )
        db.session.execute(update(reminder_t).where(reminder_t.c.id == reminder_id).values(**values))
        return {**consent, "channel": "wxa", "data": subscribe_message(row, now)}
    target = _mp_target(row)
    values.update(target)
    db.session.execute(update(reminder_t).where(reminder_t.c.id == reminder_id).values(**values))
    if values["status"] == "skipped":
        return "skipped"
    return {
        "channel": "mp",
        "openid": target["openid"],
        "template_id": target["template_id"],
        "client_msg_id": row.client_msg_id,
        "data": message(row, now),
    }


def _mp_target(row: Any) -> dict[str, Any]:
    """The official-account template message's openid and template, or why it is skipped."""
    appid = current_app.config.get("WECHAT_MP_APPID") or ""
    openid = db.session.scalar(
        select(MemberOpenid.openid).where(MemberOpenid.member_id == row.member_id, MemberOpenid.appid == appid)
    )
    template = template_id() if row.kind == "expiry" else birthday_template_id()
    values: dict[str, Any] = {"openid": openid, "template_id": template or None, "channel": "mp"}
    if not openid:
        values.update(status="skipped", detail="会员没有公众号 openid（未关注或未在公众号中登录）")
    elif not template:
        setting = "WECHAT_TEMPLATE_POINTS_EXPIRY" if row.kind == "expiry" else "WECHAT_TEMPLATE_BIRTHDAY"
        values.update(status="skipped", detail=f"未配置公众号模板（{setting}）")
    else:
        values.update(status="sending", detail="")
    return values


def _take_consent(row: Any, now: datetime) -> dict[str, Any] | None:
    """Use the member's oldest unused consent for this kind's subscribe template (guarded UPDATE)."""
    template = subscribe_template_id(row.kind)
    if not template:
        return None
    while True:
        found = db.session.execute(
            select(consent_t.c.id, consent_t.c.openid)
            .where(
                consent_t.c.member_id == row.member_id,
                consent_t.c.template_id == template,
                consent_t.c.status == "unused",
            )
            .order_by(consent_t.c.id)
            .limit(1)
        ).first()
        if found is None:
            return None
        taken = db.session.execute(
            update(consent_t)
            .where(consent_t.c.id == found.id, consent_t.c.status == "unused")
            .values(status="used", used_at=now, reminder_id=row.id)
        ).rowcount
        if taken == 1:
            return {"openid": found.openid, "template_id": template, "consent_id": int(found.id)}


def message(row: Any, now: datetime) -> dict[str, dict[str, str]]:
    """Keyword fields only: official-account templates no longer show ``first`` and ``remark``."""
    balance = points.balance(row.member_id, at=now)
    if row.kind == "birthday":
        gift = f"赠送 {row.points} 积分" if row.points else "祝您生日快乐"
        return {
            "keyword1": {"value": "会员生日祝福"},
            "keyword2": {"value": f"{row.expiry_date:%Y-%m-%d}"},
            "keyword3": {"value": f"{gift}，当前可用 {balance} 积分"},
        }
    return {
        "keyword1": {"value": f"{row.points} 积分即将到期"},
        "keyword2": {"value": f"{row.expiry_date:%Y-%m-%d} 23:59"},
        "keyword3": {"value": f"当前可用 {balance} 积分，到期前可兑换余额或抵扣消费"},
    }


def subscribe_message(row: Any, now: datetime) -> dict[str, dict[str, str]]:
    """The subscribe template's fields (thing ≤ 20 characters, number, date: WeChat's field kinds)."""
    balance = points.balance(row.member_id, at=now)
    if row.kind == "birthday":
        return {
            "thing1": {"value": "生日快乐"[:20]},
            "number2": {"value": str(row.points)},
            "date3": {"value": f"{row.expiry_date:%Y-%m-%d}"},
        }
    return {
        "number1": {"value": str(row.points)},
        "date2": {"value": f"{row.expiry_date:%Y-%m-%d}"},
        "thing3": {"value": f"可用{balance}积分，到期前请使用"[:20]},
    }


def send(reminder_id: int, *, now: datetime | None = None) -> str:
    """Send one reminder or greeting at most once (see the module docstring). Returns its status after."""
    from wechatpy.exceptions import WeChatClientException

    from ..wechat.templates import send_subscribe, send_template

    now = now or utcnow()
    claimed = _claim(reminder_id, now)
    if isinstance(claimed, str):
        return claimed
    try:
        if claimed["channel"] == "wxa":
            result = send_subscribe(claimed["openid"], claimed["template_id"], claimed["data"], page=WXA_PAGE)
        else:
            url = f"{current_app.config['PUBLIC_BASE_URL']}/static/member.html#points"
            result = send_template(
                claimed["openid"],
                claimed["template_id"],
                claimed["data"],
                url=url,
                client_msg_id=claimed["client_msg_id"],
            )
    except WeChatClientException as error:
        code = int(error.errcode) if str(error.errcode or "").lstrip("-").isdigit() else None
        if code == 43101 and claimed["channel"] == "wxa":
            _consent_refused(claimed["consent_id"])
            # the consent is gone at WeChat: fall back to the official account at once
            return send(reminder_id, now=now)
        if claimed["channel"] == "wxa":  # WeChat refused this send: the consent was not used up there
            _consent_released(claimed["consent_id"])
        if code in GIVE_UP:
            _finish(reminder_id, "gave_up", errcode=code, detail=GIVE_UP[code])
            return "gave_up"
        if code in RATE_LIMITED:
            _finish(reminder_id, "retry", errcode=code, detail="微信频率或配额限制，稍后重试")
            from rq import get_current_job

            if get_current_job() is not None:
                raise RateLimited(f"WeChat errcode {code}") from None
            return "retry"
        _finish(reminder_id, "failed", errcode=code, detail=f"微信返回错误 {code}"[:255])
        return "failed"
    except Exception as error:  # transport failure: tried again by the next run
        _finish(reminder_id, "failed", detail=f"{type(error).__name__}"[:255])
        return "failed"
    msgid = str((result or {}).get("msgid") or "")[:32] or None
    _finish(reminder_id, "sent", msgid=msgid, errcode=0)
    return "sent"


@transactional
def _consent_refused(consent_id: int) -> None:
    """WeChat said 43101: this consent is spent (or was never given there); the reminder goes back to
    ``pending`` so that its next claim takes another consent or the official account."""
    row = db.session.execute(select(consent_t.c.reminder_id).where(consent_t.c.id == consent_id)).first()
    db.session.execute(update(consent_t).where(consent_t.c.id == consent_id).values(status="refused"))
    if row is not None and row.reminder_id is not None:
        db.session.execute(
            update(reminder_t)
            .where(reminder_t.c.id == row.reminder_id, reminder_t.c.status == "sending")
            .values(status="pending", errcode=43101, detail=GIVE_UP[43101])
        )


@transactional
def _consent_released(consent_id: int) -> None:
    db.session.execute(
        update(consent_t)
        .where(consent_t.c.id == consent_id, consent_t.c.status == "used")
        .values(status="unused", used_at=None, reminder_id=None)
    )


@transactional
def _finish(
    reminder_id: int, status: str, *, msgid: str | None = None, errcode: int | None = None, detail: str = ""
) -> None:
    db.session.execute(
        update(reminder_t)
        .where(reminder_t.c.id == reminder_id)
        .values(
            status=status,
            msgid=msgid,
            errcode=errcode,
            detail=detail[:255],
            sent_at=utcnow() if status == "sent" else None,
        )
    )


def run_daily(*, now: datetime | None = None, batch_size: int | None = None) -> dict[str, int]:
    """The daily job: expire what has expired (in batches), then plan the reminders and queue what is due."""
    from .service import expire_due

    now = now or utcnow()
    batch_size = batch_size or batch_size_setting()
    expired = expire_due(now=now, batch_size=batch_size)
    planned = plan(now=now, batch_size=batch_size)
    queued = enqueue_all_due(now=now, batch_size=batch_size)
    return {"expired": expired, "reminders": planned, "queued": queued}


def log_page(
    *, status: str | None = None, member_id: int | None = None, limit: int = 50, before_id: int | None = None
) -> list[Any]:
    query = select(reminder_t).order_by(reminder_t.c.id.desc()).limit(min(max(limit, 1), 200))
    if status:
        query = query.where(reminder_t.c.status == status)
    if member_id:
        query = query.where(reminder_t.c.member_id == member_id)
    if before_id:
        query = query.where(reminder_t.c.id < before_id)
    return list(db.session.execute(query).all())
