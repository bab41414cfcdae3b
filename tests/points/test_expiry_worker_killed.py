"""The daily points job on a real RQ worker process (``python -m jobs.worker``) on Redis, killed with
SIGKILL in the middle of the expiry batches and again in the middle of a chunk of reminders, then run
again (as the next cron run does): every lot expired once, every reminder sent once (counted at the
fake WeChat), the ledger clean. Only with TEST_REDIS_URL (CI sets it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from mp_backend.extensions import db, jobs
from mp_backend.ledger import points
from mp_backend.loyalty.models import PointsReminder
from tests.conftest import assert_ledger_ok
from tests.points.conftest import TEMPLATE, assert_points_ok

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs Redis: set TEST_REDIS_URL")

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = 30
EXPIRED_PER_MEMBER = 20
BATCH = 4  # lots per expiry transaction: 150 transactions, so a kill lands between two of them
CONFIG = [{"WECHAT_TEMPLATE_POINTS_EXPIRY": TEMPLATE, "POINTS_REMINDER_RECLAIM_SECONDS": 0}]


def start_worker(app, database_url: str) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """``python -m jobs.worker`` in its own session (so SIGKILL reaches its work horse too)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ["TEST_REDIS_URL"],
        "WECHAT_SANDBOX": "0",
        "SECRET_KEY": app.config["SECRET_KEY"],
        "PUBLIC_BASE_URL": app.config["PUBLIC_BASE_URL"],
        "WECHAT_TEMPLATE_POINTS_EXPIRY": TEMPLATE,
        "POINTS_REMINDER_RECLAIM_SECONDS": "0",
        "POINTS_JOB_BATCH_SIZE": str(BATCH),
    }
    for key, value in app.config.items():
        if key.startswith("WECHAT_") and isinstance(value, str):
            env[key] = value
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.worker"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def wait_for(what, timeout: float = 60.0, every: float = 0.005):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what.__name__}")


def expired_entries() -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).where(points.entry_t.c.kind == "expire")))


@pytest.mark.parametrize("app_overrides", CONFIG)
def test_worker_killed_mid_expiry_and_mid_reminders_then_rerun(app, fake, mp_member, database_url):
    # given members with lots that expired a month ago, and one lot each that expires in 5 days
    now = datetime.now(UTC)
    members = [mp_member(f"o-kill-{n}") for n in range(MEMBERS)]
    with time_machine.travel(now - timedelta(days=30), tick=False):
        for member_id in members:
            for n in range(EXPIRED_PER_MEMBER):
                points.award_points(member_id, 7, key=f"old-{member_id}-{n}", source="test", validity_days=2)
    for member_id in members:
        points.award_points(member_id, 50, key=f"soon-{member_id}", source="test", validity_days=5)
    total = MEMBERS * EXPIRED_PER_MEMBER
    queue = jobs.queue
    db.session.remove()

    # when the worker is killed after some expiry batches committed and before the last one
    queue.enqueue("jobs.points.daily")
    worker = start_worker(app, database_url)
    try:
        seen = wait_for(lambda: expired_entries() or None)
    finally:
        kill(worker)
    stopped_at = expired_entries()
    assert 0 < seen <= stopped_at < total, (seen, stopped_at)  # the kill landed mid-expiry
    assert fake.template_messages == []

    # and, run again, it is killed in the middle of sending the reminders (WeChat answers slowly)
    fake.delay("cgi-bin/message/template/send", 0.15)
    queue.enqueue("jobs.points.daily")
    worker = start_worker(app, database_url)
    try:
        wait_for(lambda: len(fake.template_messages) >= 5)
    finally:
        kill(worker)
    sent_before = len(fake.template_messages)
    assert 5 <= sent_before < MEMBERS  # mid-chunk
    assert expired_entries() == total

    # then the next run (the abandoned jobs re-enqueued by the daily job) finishes the work
    fake.delay("cgi-bin/message/template/send", 0)
    queue.enqueue("jobs.points.daily")
    worker = start_worker(app, database_url)
    try:
        wait_for(lambda: _all_sent() or None, timeout=90)
        time.sleep(0.3)  # anything still queued would send a second message now
    finally:
        kill(worker)

    # every reminder once at WeChat, one per member, each message id once
    assert len(fake.template_messages) == MEMBERS
    assert Counter(m["touser"] for m in fake.template_messages) == Counter(f"o-kill-{n}" for n in range(MEMBERS))
    assert len({m["client_msg_id"] for m in fake.template_messages}) == MEMBERS
    # every lot expired once: one expire entry per lot, keyed by the lot, nothing left in them
    db.session.rollback()
    rows = db.session.execute(
        select(points.entry_t.c.lot_id, points.entry_t.c.idempotency_key, points.entry_t.c.delta).where(
            points.entry_t.c.kind == "expire"
        )
    ).all()
    assert len(rows) == total and len({r.lot_id for r in rows}) == total
    assert all(r.idempotency_key == f"expire:{r.lot_id}" and r.delta == -7 for r in rows)
    for member_id in members:
        assert points.balance(member_id) == 50
    assert_points_ok()
    assert_ledger_ok()


def _all_sent() -> bool:
    db.session.rollback()
    statuses = Counter(db.session.scalars(select(PointsReminder.status)))
    return statuses == Counter({"sent": MEMBERS})
