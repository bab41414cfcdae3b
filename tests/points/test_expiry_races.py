"""Expiry racing spends of the same lots, in worker PROCESSES on MariaDB (threads would share the GIL
and rarely interleave where it matters; see tests/ledger/test_races.py).

Each member has one lot of 100 points that is still valid for the spenders (the real clock) and
already expired for the expiry job (run with ``now`` two days on, as at the merchant's midnight).
Spender processes take 60 points from each member while expiry processes expire the lots in small
batches, all released by one barrier. Each lot ends either spent (60) and then expired (the 40 left),
or expired (100) with the spend refused: never both in full, the sums exact, one expire entry per lot.
"""

from __future__ import annotations

import multiprocessing
import traceback
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.ledger import points
from mp_backend.models_base import utcnow
from tests.conftest import MYSQL, assert_ledger_ok, make_config
from tests.points.conftest import assert_points_ok

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

MEMBERS = 48
SPENDERS = 4
EXPIRERS = 2
TIMEOUT = 120
ROUNDS = 3


def _process(role: str, index: int, database_url: str, members: list[int], later: Any, barrier: Any, out: Any) -> None:
    from mp_backend import create_app
    from mp_backend.errors import AppError
    from mp_backend.extensions import db as worker_db
    from mp_backend.ledger import points as worker_points
    from mp_backend.loyalty import service as worker_loyalty

    results: list[tuple[str, Any]] = []
    try:
        app = create_app(make_config(database_url, REDIS_URL=None))
        with app.app_context():
            worker_db.session.execute(select(1))
            worker_db.session.rollback()
            barrier.wait(timeout=TIMEOUT)
            if role == "spend":
                # interleave the order so that spenders meet the expiry batches from both ends
                for member_id in members if index % 2 == 0 else list(reversed(members)):
                    try:
                        done = worker_points.spend_points(member_id, 60, key=f"race-spend-{member_id}")
                        results.append(("spent", (member_id, done.points, done.replayed)))
                    except AppError as error:
                        results.append(("refused", (member_id, error.code)))
            else:
                results.append(("expired", worker_loyalty.expire_due(now=later, batch_size=3)))
            worker_db.session.remove()
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        results.append(("crash", traceback.format_exc()))
    out.put((role, index, results))


def test_expiry_racing_spends_of_the_same_lots(app, make_member, database_url):
    # Up to ROUNDS races: every one must keep the invariants, and at least one must show both outcomes
    # (all spends winning, or all expiries, would mean the processes never met).
    seen_both = False
    for round_no in range(ROUNDS):
        spent, refused = race(round_no, make_member, database_url)
        seen_both = seen_both or bool(spent and refused)
        if seen_both:
            break
    assert seen_both, "in no round did a spend and an expiry meet"
    assert_points_ok()
    assert_ledger_ok()


def race(round_no: int, make_member, database_url: str) -> tuple[dict[int, int], dict[int, str]]:  # type: ignore[no-untyped-def]
    # given members with one lot each, valid until tomorrow's end (Shanghai)
    members = [make_member() for _ in range(MEMBERS)]
    for member_id in members:
        points.award_points(member_id, 100, key=f"race-award-{member_id}", source="test", validity_days=1)
    later = utcnow() + timedelta(days=3)  # the expiry job's clock: past the lots' midnight
    db.session.remove()

    # when spenders and expiry jobs start together
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(SPENDERS + EXPIRERS), ctx.Queue()
    share = [members[i::SPENDERS] for i in range(SPENDERS)]
    procs = [
        ctx.Process(target=_process, args=("spend", i, database_url, share[i], later, barrier, out))
        for i in range(SPENDERS)
    ] + [
        ctx.Process(target=_process, args=("expire", i, database_url, [], later, barrier, out)) for i in range(EXPIRERS)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=TIMEOUT) for _ in procs]
    for proc in procs:
        proc.join(timeout=TIMEOUT)
    crashes = [r for _, _, results in reports for r in results if r[0] == "crash"]
    assert crashes == [], crashes[0][1] if crashes else ""

    # then every lot was either spent then expired, or expired with the spend refused
    spent = {m: n for _, _, results in reports for kind, value in results if kind == "spent" for m, n, _ in [value]}
    refused = {
        m: code for _, _, results in reports for kind, value in results if kind == "refused" for m, code in [value]
    }
    expired_total = sum(value for _, _, results in reports for kind, value in results if kind == "expired")
    assert set(spent) | set(refused) == set(members) and not set(spent) & set(refused)
    assert set(refused.values()) <= {"insufficient_points"}
    assert expired_total == MEMBERS  # each lot expired by exactly one job, once
    db.session.rollback()
    entries = db.session.execute(
        select(points.entry_t.c.member_id, points.entry_t.c.kind, points.entry_t.c.delta).where(
            points.entry_t.c.member_id.in_(members)
        )
    ).all()
    for member_id in members:
        mine = sorted((e.kind, e.delta) for e in entries if e.member_id == member_id)
        if member_id in spent:
            assert spent[member_id] == 60
            assert mine == [("award", 100), ("expire", -40), ("spend", -60)], mine
        else:
            assert mine == [("award", 100), ("expire", -100)], mine
        remaining = db.session.scalars(select(points.lot_t.c.remaining).where(points.lot_t.c.member_id == member_id))
        assert list(remaining) == [0]
    assert_points_ok()
    return spent, refused
