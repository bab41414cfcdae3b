"""Balance change notices: after money moves and the transaction commits, a job sends the member a
WeChat template message (what happened, the amount, the balance after, the store, the time).

Where credits and debits happen, the service that owns the transaction calls ``notify_after_commit``
with the ledger posting, inside its ``@transactional`` call: the job is enqueued only once that
transaction commits (``jobs.enqueue_after_commit``), so a rolled-back payment sends nothing. Called
today by recharge settlement (``recharge.service._credit_order``), offline recharges and batch rows;
payments, till charges and refunds call it the same way after their ledger operation.

The job (``jobs.notices.send_balance_notice``) sends each entry at most once: it first claims the
entry in ``balance_notice`` (UNIQUE entry_id) in its own transaction, then calls WeChat, then records
the outcome. A retried or duplicated job finds the claim and sends nothing; a crash between the send
and the record leaves the claim (``sending``), so the member may miss a notice but never gets two.
A member without an official-account openid, or a deployment without a template id
(``WECHAT_TEMPLATE_BALANCE_CHANGE``), is recorded as ``skipped`` without calling WeChat; a WeChat
refusal is recorded as ``failed`` and the next run of the job for that entry tries again. Without a
template nothing can ever be sent: the ``skipped`` row is then written at once, in the posting's own
transaction, and no job runs (one INSERT instead of a job and a transaction per posting).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import hotpath
from ..errors import AppError
from ..extensions import db, jobs
from ..hotpath import Sql
from ..ledger.models import LedgerEntry
from ..models_base import utcnow
from ..money import yuan
from ..org.models import Store
from ..records.words import china_time, kind_words, signed_yuan
from ..transaction import transactional
from .models import BalanceNotice

log = logging.getLogger(__name__)

JOB = "jobs.notices.send_balance_notice"
notice_t = BalanceNotice.__table__


def template_id() -> str:
    return str(
        current_app.config.get("WECHAT_TEMPLATE_BALANCE_CHANGE")
        or os.environ.get("WECHAT_TEMPLATE_BALANCE_CHANGE")
        or ""
    )


def notify_after_commit(posting: Any, amount_fen: int | None = None, title: str | None = None) -> None:
    """Send the member a notice about this ledger posting once the caller's transaction commits.

    ``amount_fen`` and ``title`` override what the message says (a recharge with a gift is one notice of
    principal + bonus, sent for its last entry). A replayed posting changed nothing: no notice."""
    if getattr(posting, "replayed", False):
        return
    entry_id = int(posting.entry_id)
    if not template_id():
        # Nothing can be sent without a template: the row the job would write (skipped, and why), written
        # now in the caller's transaction instead of a job and a transaction of its own per posting.
        tx = hotpath.cursor()
        appid = current_app.config.get("WECHAT_MP_APPID") or ""
        params = (entry_id, int(posting.member_id), NO_OPENID, NO_TEMPLATE, tx.timestamp(), posting.member_id, appid)
        _RECORD_UNSENDABLE.run(tx, params)
        return
    jobs.enqueue_after_commit(JOB, entry_id, amount_fen, title, job_id=f"balance-notice-{entry_id}")


NO_OPENID = "会员没有公众号 openid（未关注或未在公众号中登录）"
NO_TEMPLATE = "未配置余额变动模板（WECHAT_TEMPLATE_BALANCE_CHANGE）"
_RECORD_UNSENDABLE = Sql(
    "INSERT INTO balance_notice (entry_id, member_id, status, openid, template_id, detail, attempts, created_at) "
    "SELECT ?, ?, 'skipped', o.openid, NULL, CASE WHEN o.openid IS NULL THEN ? ELSE ? END, 1, ? FROM "
    "(SELECT (SELECT openid FROM member_openid WHERE member_id = ? AND appid = ?) AS openid) o"
)


@dataclass(frozen=True)
class Claimed:
    notice_id: int
    openid: str
    template_id: str
    data: dict[str, dict[str, str]]


def send(entry_id: int, amount_fen: int | None = None, title: str | None = None) -> str:
    """Send the notice of one ledger entry, at most once. Returns what happened: sent, skipped,
    failed, or done (an earlier run already handled it)."""
    try:
        claimed = _claim(entry_id, amount_fen, title)
    except IntegrityError:  # a concurrent run inserted its claim first
        db.session.rollback()
        return "done"
    if not isinstance(claimed, Claimed):
        return claimed
    from ..wechat import clients

    try:
        with clients.translate_errors("template message"):
            result = clients.mp_client().message.send_template(claimed.openid, claimed.template_id, claimed.data)
    except AppError as error:
        _finish(claimed.notice_id, "failed", detail=f"{error.code}: {error.message}")
        return "failed"
    msgid = str((result or {}).get("msgid") or "")[:32] or None
    _finish(claimed.notice_id, "sent", msgid=msgid)
    return "sent"


# The claim's first read, on the driver cursor (``hotpath``: every recharge and payment runs this job):
# the entry's member, its official-account openid and any earlier claim, in one round trip.
_ENTRY_FOR_NOTICE = Sql(
    "SELECT e.member_id, "
    "(SELECT o.openid FROM member_openid o WHERE o.member_id = e.member_id AND o.appid = ?), "
    "(SELECT n.status FROM balance_notice n WHERE n.entry_id = e.id) "
    "FROM ledger_entry e WHERE e.id = ?"
)
_INSERT_NOTICE = Sql(
    "INSERT INTO balance_notice (entry_id, member_id, status, openid, template_id, detail, attempts, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, 1, ?)"
)


@transactional
def _claim(entry_id: int, amount_fen: int | None, title: str | None) -> Claimed | str:
    appid = current_app.config.get("WECHAT_MP_APPID") or ""
    tx = hotpath.cursor()
    found = _ENTRY_FOR_NOTICE.one(tx, (appid, entry_id))
    if found is None:
        return "missing"
    member_id, openid, earlier = found
    if earlier is not None and earlier != "failed":
        return "done"
    template = template_id()
    status, detail = "sending", ""
    if not openid:
        status, detail = "skipped", NO_OPENID
    elif not template:
        status, detail = "skipped", NO_TEMPLATE
    if earlier is None:
        # A concurrent run that inserted first makes this INSERT fail on the UNIQUE entry_id: "done".
        row = (entry_id, member_id, status, openid or None, template or None, detail, tx.timestamp())
        notice_id = int(_INSERT_NOTICE.run(tx, row).lastrowid)
    else:  # failed before: claim it again for this attempt, under its row lock (a racing retry waits here)
        existing = db.session.scalars(
            select(BalanceNotice).where(BalanceNotice.entry_id == entry_id).with_for_update()
        ).one()
        if existing.status != "failed":
            return "done"
        existing.status, existing.detail, existing.attempts = status, detail, existing.attempts + 1
        db.session.flush()
        notice_id = existing.id
    if status == "skipped":
        log.debug("balance notice for entry %s skipped: %s", entry_id, detail)
        return "skipped"
    entry = db.session.get(LedgerEntry, entry_id)
    assert entry is not None  # read above; ledger rows are never deleted
    return Claimed(notice_id, str(openid), template, _message(entry, amount_fen, title))


def _message(entry: LedgerEntry, amount_fen: int | None, title: str | None) -> dict[str, dict[str, str]]:
    store = db.session.get(Store, entry.store_id) if entry.store_id else None
    amount = entry.amount_fen if amount_fen is None else amount_fen
    what = title or kind_words(entry.kind, entry.principal_delta_fen, entry.bonus_delta_fen)
    available = entry.principal_after_fen + entry.bonus_after_fen
    return {
        "first": {"value": f"您的会员卡余额有变动：{what}"},
        "keyword1": {"value": what},
        "keyword2": {"value": f"{signed_yuan(entry.kind, amount)} 元"},
        "keyword3": {"value": f"{yuan(available)} 元"},
        "keyword4": {"value": store.name if store else "线上"},
        "keyword5": {"value": china_time(entry.created_at)},
        "remark": {"value": "如非本人操作，请及时联系门店。"},
    }


@transactional
def _finish(notice_id: int, status: str, *, msgid: str | None = None, detail: str = "") -> None:
    db.session.execute(
        update(notice_t)
        .where(notice_t.c.id == notice_id)
        .values(status=status, msgid=msgid, detail=detail[:255], sent_at=utcnow() if status == "sent" else None)
    )
