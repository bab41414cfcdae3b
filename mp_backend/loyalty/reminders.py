"""Points expiry reminders: 30, 15 and 3 days before a member's points expire, one official-account
template message per member, expiry date and offset (UNIQUE in ``points_reminder``).

``plan`` inserts the log rows (a run that dies half-way is finished by the next one: the UNIQUE key
makes a second insert a no-op); ``send`` claims one row, sends it with ``client_msg_id`` =
``ptsr-<row id>`` and records WeChat's answer:

- 43004 (not subscribed) / 43019 (blocked) / 43101 (no consent left): ``gave_up``, never retried;
- 45009 / 45047 (quota, rate): ``retry``; under RQ the job raises so that its ``Retry`` backs off;
- 40001 / 42001 (token): the wechatpy client refreshes the token and retries once by itself;
- anything else: ``failed``; the next daily run tries again.

A job killed between WeChat's acceptance and the record leaves the row ``sending``; after
``POINTS_REMINDER_RECLAIM_SECONDS`` a later run sends it again with the same ``client_msg_id``, which
WeChat deduplicates: the member gets the message once.
"""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db, jobs
from ..ledger import points
from ..members.models import MemberOpenid
from ..models_base import utcnow
from ..transaction import transactional
from .models import PointsReminder

log = logging.getLogger(__name__)

OFFSETS = (30, 15, 3)
JOB = "jobs.points.send_reminder"
GIVE_UP = {43004: "用户未关注公众号", 43019: "用户已将公众号拉黑", 43101: "用户未订阅或订阅次数已用完"}
RATE_LIMITED = {45009, 45047}
reminder_t = PointsReminder.__table__


class RateLimited(Exception):
    """WeChat said 45009/45047: RQ's Retry runs the job again later."""


def _config(name: str, default: str) -> str:
    return str(current_app.config.get(name) or os.environ.get(name) or default)


def template_id() -> str:
    return _config("WECHAT_TEMPLATE_POINTS_EXPIRY", "")


def reclaim_seconds() -> int:
    return int(_config("POINTS_REMINDER_RECLAIM_SECONDS", "600"))


def offset_for(days_left: int) -> int | None:
    """The reminder a lot that expires in ``days_left`` days is due: 30 for 16-30, 15 for 4-15, 3 for 0-3."""
    due = None
    for offset in sorted(OFFSETS):
        if days_left <= offset:
            return offset
    return due


def plan(*, now: datetime | None = None, batch_size: int = 1000) -> list[int]:
    """Log a reminder for every member whose points expire within 30 days and who has not had this
    one; returns the ids of the rows still to send (new and unfinished ones)."""
    now = now or utcnow()
    today = points.local_date(now)
    horizon = points.local_midnight_utc(today + timedelta(days=max(OFFSETS) + 1))
    lot_t = points.lot_t
    last_member = 0
    while True:
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
        more = db.session.scalar(select(func.max(lot_t.c.member_id)))
        db.session.rollback()
        wanted: dict[tuple[int, date, int], int] = {}
        for member_id, expires_at, remaining in rows:
            last_day = points.last_valid_day(expires_at)
            offset = offset_for((last_day - today).days)
            if offset is not None:
                k = (int(member_id), last_day, offset)
                wanted[k] = wanted.get(k, 0) + int(remaining)
        if wanted:
            _insert(wanted, now)
        last_member += batch_size
        if more is None or last_member >= more:
            break
    return due_ids(now=now)


@transactional
def _insert(wanted: dict[tuple[int, date, int], int], now: datetime) -> None:
    members = sorted({k[0] for k in wanted})
    existing = {
        (int(m), d, int(o))
        for m, d, o in db.session.execute(
            select(reminder_t.c.member_id, reminder_t.c.expiry_date, reminder_t.c.offset_days).where(
                reminder_t.c.member_id.in_(members), reminder_t.c.kind == "expiry"
            )
        ).all()
    }
    fresh = [
        {
            "member_id": m,
            "kind": "expiry",
            "expiry_date": d,
            "offset_days": o,
            "points": p,
            "status": "pending",
            "client_msg_id": f"ptsr-{m}-{d:%Y%m%d}-{o}",
            "attempts": 0,
            "detail": "",
            "created_at": now,
        }
        for (m, d, o), p in wanted.items()
        if (m, d, o) not in existing
    ]
    if not fresh:
        return
    try:
        with db.session.begin_nested():
            db.session.execute(reminder_t.insert(), fresh)
    except IntegrityError:  # a concurrent run inserted some: insert the rest one by one
        for row in fresh:
            try:
                with db.session.begin_nested():
                    db.session.execute(reminder_t.insert(), [row])
            except IntegrityError:
                continue


def due_ids(*, now: datetime | None = None) -> list[int]:
    """Rows to (re)send: pending, retry, failed, and sending rows abandoned longer than the reclaim time."""
    now = now or utcnow()
    stale = now - timedelta(seconds=reclaim_seconds())
    ids = list(
        db.session.scalars(
            select(reminder_t.c.id)
            .where(
                reminder_t.c.status.in_(("pending", "retry", "failed"))
                | ((reminder_t.c.status == "sending") & (reminder_t.c.claimed_at <= stale))
            )
            .order_by(reminder_t.c.id)
        )
    )
    db.session.rollback()
    return ids


def enqueue_due(ids: list[int]) -> None:
    from rq import Retry

    for reminder_id in ids:
        if jobs.queue is not None:
            jobs.enqueue(
                JOB,
                reminder_id,
                job_id=f"points-reminder-{reminder_id}",
                retry=Retry(max=5, interval=[60, 300, 900, 1800, 3600]),
            )
        else:
            jobs.enqueue(JOB, reminder_id)


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
    appid = current_app.config.get("WECHAT_MP_APPID") or ""
    openid = db.session.scalar(
        select(MemberOpenid.openid).where(MemberOpenid.member_id == row.member_id, MemberOpenid.appid == appid)
    )
    template = template_id()
    values: dict[str, Any] = {
        "attempts": row.attempts + 1,
        "claimed_at": now,
        "openid": openid,
        "template_id": template or None,
    }
    if not openid:
        values.update(status="skipped", detail="会员没有公众号 openid（未关注或未在公众号中登录）")
    elif not template:
        values.update(status="skipped", detail="未配置积分到期提醒模板（WECHAT_TEMPLATE_POINTS_EXPIRY）")
    else:
        values.update(status="sending", detail="")
    db.session.execute(update(reminder_t).where(reminder_t.c.id == reminder_id).values(**values))
    if values["status"] == "skipped":
        return "skipped"
    return {
        "openid": openid,
        "template_id": template,
        "client_msg_id": row.client_msg_id,
        "data": message(row.points, row.expiry_date, points.balance(row.member_id, at=now)),
    }


def message(expiring: int, last_day: date, balance: int) -> dict[str, dict[str, str]]:
    """Keyword fields only: official-account templates no longer show ``first`` and ``remark``."""
    return {
        "keyword1": {"value": f"{expiring} 积分即将到期"},
        "keyword2": {"value": f"{last_day:%Y-%m-%d} 23:59"},
        "keyword3": {"value": f"当前可用 {balance} 积分，到期前可兑换余额或抵扣消费"},
    }


def send(reminder_id: int, *, now: datetime | None = None) -> str:
    """Send one reminder at most once (see the module docstring). Returns the row's status after."""
    from wechatpy.exceptions import WeChatClientException

    from ..wechat.templates import send_template

    now = now or utcnow()
    claimed = _claim(reminder_id, now)
    if isinstance(claimed, str):
        return claimed
    url = f"{current_app.config['PUBLIC_BASE_URL']}/static/member.html#points"
    try:
        result = send_template(
            claimed["openid"], claimed["template_id"], claimed["data"], url=url, client_msg_id=claimed["client_msg_id"]
        )
    except WeChatClientException as error:
        code = int(error.errcode) if str(error.errcode or "").lstrip("-").isdigit() else None
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


def run_daily(*, now: datetime | None = None, batch_size: int = 1000) -> dict[str, int]:
    """The daily job: expire what has expired (in batches), then plan and enqueue the reminders."""
    from .service import expire_due

    now = now or utcnow()
    expired = expire_due(now=now, batch_size=batch_size)
    ids = plan(now=now, batch_size=batch_size)
    enqueue_due(ids)
    return {"expired": expired, "reminders": len(ids)}


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
