"""Points under real concurrency on MariaDB, in worker processes (as tests/ledger/test_races.py explains:
threads rarely interleave where processes do): redemptions at checkout racing spends (exchanges) of the
same lot, and refunds of one payment racing each other. Each worker builds its own app and connection,
waits on one barrier, then makes its calls; what each call ended as comes back to the test."""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from mp_backend.extensions import db
from mp_backend.ledger import points
from tests.conftest import MYSQL, assert_ledger_ok, make_config

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

PROCESSES = 8
TIMEOUT = 120


def _worker(database_url: str, barrier: Any, results: Any, calls: list[tuple[str, tuple, dict]]) -> None:
    from mp_backend import create_app
    from mp_backend.errors import AppError
    from mp_backend.extensions import db as worker_db
    from mp_backend.loyalty import service as loyalty

    outcomes: list[tuple[str, Any]] = []
    try:
        app = create_app(make_config(database_url))
        with app.app_context():
            worker_db.session.execute(text("SELECT 1"))
            worker_db.session.rollback()
            barrier.wait(timeout=TIMEOUT)
            for name, args, kwargs in calls:
                try:
                    result = getattr(loyalty, name)(*args, **kwargs)
                    outcomes.append(("ok", repr(result)))
                except AppError as error:
                    outcomes.append(("error", error.code))
                except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
                    outcomes.append(("crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
                worker_db.session.rollback()
    except Exception as error:  # noqa: BLE001
        outcomes.append(("crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
    results.put(outcomes)


def race(database_url: str, plan: list[list[tuple[str, tuple, dict]]]) -> list[tuple[str, Any]]:
    db.session.commit()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(plan)), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(database_url, barrier, results, calls)) for calls in plan]
    for worker in workers:
        worker.start()
    outcomes = [outcome for _ in workers for outcome in results.get(timeout=TIMEOUT * 2)]
    for worker in workers:
        worker.join(10)
    crashes = [value for status, value in outcomes if status == "crash"]
    assert not crashes, "\n".join(crashes)
    db.session.rollback()
    return outcomes


def test_redemptions_and_spends_of_one_lot_never_take_more_than_it_holds(app, database_url, make_member):
    # given one lot of 3,000 points
    member_id = make_member()
    points.award_points(member_id, 3_000, key="seed", source="test")
    # when 8 processes at once each redeem 600 at checkout or exchange 600 into bonus (4,800 asked for)
    plan = [
        [("redeem_for_order", (member_id, 600), {"order_fen": 100_000, "key": f"order-{w}"})]
        if w % 2
        else [("exchange", (member_id, 600), {"key": f"exchange-{w}"})]
        for w in range(PROCESSES)
    ]
    outcomes = race(database_url, plan)
    # then exactly five of them got their points, the others were refused as short of points
    assert Counter(status if status == "ok" else value for status, value in outcomes) == {
        "ok": 5,
        "insufficient_points": 3,
    }
    assert points.balance(member_id) == 0
    lot = db.session.execute(text("SELECT remaining FROM points_lot WHERE member_id = :m"), {"m": member_id}).one()
    assert lot.remaining == 0
    assert_ledger_ok()


def test_racing_refunds_of_one_payment_take_back_once_each(app, database_url, make_member):
    # given a payment that earned 1,000 points (key payment:1), and 8 refunds of 1/8 each, each sent twice
    member_id = make_member()
    points.award_points(member_id, 1_000, key="earn:payment:race", source="spend")
    plan = [
        [
            (
                "refund_points",
                (member_id, "payment:race"),
                {"refund_key": f"rf-{w}", "refund_fen": 100, "payment_fen": 800},
            )
        ]
        * 2
        for w in range(PROCESSES)
    ]
    outcomes = race(database_url, plan)
    assert all(status == "ok" for status, _ in outcomes)
    # then all of the points are back, none twice, and one record per refund
    assert points.balance(member_id) == 0
    assert db.session.execute(text("SELECT COUNT(*), SUM(due) FROM points_refund")).one() == (PROCESSES, 1_000)
    assert_ledger_ok()
