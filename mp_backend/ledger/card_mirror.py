"""The WeChat member card shows balance and points: a ledger change marks its mirror stale.

The ledger is the only code that changes a balance or points, so it is the one place that cannot
miss a change. In the change's own transaction it bumps ``wechat_card.sync_seq`` of the member's
WeChat card (no row, nothing happens), and once that transaction commits a push job sends WeChat the
then-current values (``members/wechat_card.py``): a rolled-back change pushes nothing, and of several
changes the last value wins. Without ``WECHAT_CARD_ID`` there is no WeChat card and this costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from flask import current_app

from ..extensions import db, jobs

PUSH_JOB = "jobs.wechat_card.push"
_BUMP = "UPDATE wechat_card SET sync_seq = sync_seq + 1 WHERE member_id = ?"


def card_id() -> str:
    return str(current_app.config.get("WECHAT_CARD_ID") or os.environ.get("WECHAT_CARD_ID") or "")


def changed(member_ids: Iterable[int]) -> None:
    """In the caller's transaction: these members' balance or points changed."""
    if not card_id():
        return
    from .service import _Tx

    tx = _Tx.current()
    statement = _BUMP if tx.conn.dialect.paramstyle == "qmark" else _BUMP.replace("?", "%s")
    # One push per member and transaction, however many entries it wrote (the pending list is
    # emptied by the commit or the rollback, ``transaction.transactional``).
    pending = db.session().info.get("after_commit_jobs", [])
    queued = {args[0] for path, args, _job_id, _kwargs in pending if path == PUSH_JOB}
    for member_id in sorted(set(member_ids)):
        if tx.run(statement, (member_id,)).rowcount and member_id not in queued:
            queued.add(member_id)
            enqueue_push(member_id, after_commit=True)


def enqueue_push(member_id: int, *, after_commit: bool) -> None:
    from rq import Retry

    # RQ retries a failed or busy push with backoff; in-process mode (no Redis) has no retry option.
    options = {"retry": Retry(max=6, interval=[5, 30, 120, 600, 1800, 3600])} if jobs.queue is not None else {}
    if after_commit:
        jobs.enqueue_after_commit(PUSH_JOB, member_id, **options)
    else:
        jobs.enqueue(PUSH_JOB, member_id, **options)
