"""The report summaries against a direct aggregation of the ledger: after random operations, after the
job runs twice, after a run interrupted in its transaction; and exact before the job runs at all."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, func, select

from mp_backend.errors import AppError
from mp_backend.extensions import db
from mp_backend.ledger import points as points_service
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry, Wallet
from mp_backend.ledger.points import PointsEntry
from mp_backend.reports import overview, summary
from mp_backend.reports.models import ReportDaily, ReportStoreTotal, ReportTotal
from tests.conftest import assert_ledger_ok

SUMMED = ("recharge_fen", "recharge_count", "bonus_fen", "consumption_fen", "consumption_count", "refund_fen",
          "withdrawal_fen", "reversal_fen", "principal_delta_fen", "bonus_delta_fen", "held_delta_fen")  # fmt: skip


def direct() -> dict[str, Any]:
    """The oracle: every figure computed from the ledger, wallets and points rows themselves."""
    db.session.rollback()
    daily: dict[tuple[Any, int], Counter[str]] = defaultdict(Counter)
    first: dict[tuple[int, int], Any] = {}
    for e in db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)):
        c = daily[((e.created_at + timedelta(hours=8)).date(), e.store_id or 0)]
        c["principal_delta_fen"] += e.principal_delta_fen
        c["bonus_delta_fen"] += e.bonus_delta_fen
        c["held_delta_fen"] += e.held_delta_fen
        if e.kind == "credit" and e.principal_delta_fen:
            c["recharge_fen"] += e.principal_delta_fen
            c["recharge_count"] += 1
            first.setdefault((e.store_id or 0, e.member_id), (e.created_at + timedelta(hours=8)).date())
        if e.kind == "credit" and e.bonus_delta_fen:
            c["bonus_fen"] += e.bonus_delta_fen
        if e.kind in ("debit", "capture"):
            c["consumption_fen"] += e.amount_fen
            c["consumption_count"] += 1
        if e.kind in ("refund", "withdrawal", "reversal"):
            c[f"{e.kind}_fen"] += e.amount_fen
    for (store, _member), day in first.items():
        daily[(day, store)]["new_recharge_members"] += 1
    wallets = db.session.execute(
        select(func.sum(Wallet.principal_fen), func.sum(Wallet.bonus_fen), func.sum(Wallet.held_fen))
    ).one()
    return {
        "daily": {k: Counter({n: v for n, v in c.items() if v}) for k, c in daily.items()},
        "wallets": tuple(int(x or 0) for x in wallets),
        "with_balance": db.session.scalar(
            select(func.count()).where(Wallet.principal_fen + Wallet.bonus_fen + Wallet.held_fen > 0)
        ),
        "recharge_members": len({m for _s, m in first}),
        "points": int(db.session.scalar(select(func.coalesce(func.sum(PointsEntry.delta), 0))) or 0),
    }


def summarised() -> dict[str, Any]:
    db.session.rollback()
    daily = {}
    for row in db.session.scalars(select(ReportDaily)):
        c = Counter({n: getattr(row, n) for n in (*SUMMED, "new_recharge_members") if getattr(row, n)})
        if c:
            daily[(row.day, row.store_id)] = c
    totals = Counter()
    for row in db.session.scalars(select(ReportStoreTotal)):
        totals.update({n: getattr(row, n) for n in ("principal_delta_fen", "bonus_delta_fen", "held_delta_fen")})
    total = db.session.get(ReportTotal, 1)
    return {
        "daily": daily,
        "wallets": (totals["principal_delta_fen"], totals["bonus_delta_fen"], totals["held_delta_fen"]),
        "with_balance": total.members_with_balance if total else 0,
        "recharge_members": total.recharge_members if total else 0,
        "points": total.points_outstanding if total else 0,
    }


def random_operations(rng: random.Random, members: list[int], stores: list[int | None], n: int) -> None:
    payments: list[int] = []
    holds: list[int] = []
    credits: list[int] = []
    for i in range(n):
        member, store = rng.choice(members), rng.choice(stores)
        op = rng.choice(
            ["credit", "credit", "bonus", "debit", "hold", "settle", "refund", "withdraw", "points", "reverse"]
        )
        try:
            if op == "credit":
                credits.append(
                    ledger.credit(member, rng.randint(1, 50_000), key=f"r{i}", operator="t", store_id=store).entry_id
                )
            elif op == "bonus":
                ledger.credit(member, rng.randint(1, 5_000), key=f"r{i}", operator="t", bucket="bonus", store_id=store)
            elif op == "debit":
                payments.append(
                    ledger.debit(member, rng.randint(1, 20_000), key=f"r{i}", operator="t", store_id=store).entry_id
                )
            elif op == "hold":
                holds.append(
                    ledger.hold(member, rng.randint(1, 20_000), key=f"r{i}", operator="t", store_id=store).entry_id
                )
            elif op == "settle" and holds:
                hold = holds.pop(rng.randrange(len(holds)))
                if rng.random() < 0.6:
                    payments.append(ledger.capture(hold, key=f"r{i}", operator="t", store_id=store).entry_id)
                else:
                    ledger.void(hold, key=f"r{i}", operator="t", store_id=store)
            elif op == "refund" and payments:
                ledger.refund(rng.choice(payments), rng.randint(1, 3_000), key=f"r{i}", operator="t", store_id=store)
            elif op == "withdraw":
                ledger.withdraw(
                    member, rng.randint(1, 10_000), key=f"r{i}", operator="t", reason="退还", store_id=store
                )
            elif op == "reverse" and credits:
                ledger.reverse(credits.pop(rng.randrange(len(credits))), key=f"r{i}", operator="t", reason="录错")
            elif op == "points":
                points_service.award_points(member, rng.randint(1, 500), key=f"p{i}", source="test")
        except AppError:  # insufficient balance, refund beyond the payment ...: refused, nothing written
            db.session.rollback()
        db.session.commit()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_equals_direct_aggregation_after_random_operations(app, org, make_member, seed):
    # given random operations over members and stores (and entries without a store)
    rng = random.Random(seed)
    members = [make_member() for _ in range(6)]
    stores = [*org["stores"].values(), None]
    random_operations(rng, members, stores, 150)
    # when the job folds the ledger, in small batches
    result = summary.catch_up(batch_size=rng.randint(7, 40))
    # then the summaries are what a direct aggregation of the ledger says
    assert result.caught_up and result.ledger_rows == db.session.scalar(select(func.count(LedgerEntry.id)))
    assert summarised() == direct()
    # and a second run finds nothing to do and changes nothing
    again = summary.catch_up()
    assert (again.ledger_rows, again.points_rows) == (0, 0)
    assert summarised() == direct()
    assert_ledger_ok()


def test_figures_are_exact_before_the_job_runs_and_after_it_runs_twice(app, org, make_member):
    # given a folded ledger, then a recharge the job has not seen
    alice = make_member(principal_fen=10_000)
    summary.catch_up()
    ledger.credit(alice, 2_345, key="late", operator="t", store_id=org["stores"]["sh01"])
    db.session.commit()
    # when the overview is read at once (summaries + tail), and again after two runs of the job
    before = overview.overview(org["staff"]["admin"])
    summary.catch_up()
    summary.catch_up()
    after = overview.overview(org["staff"]["admin"])
    # then both agree with the ledger: the new money counts before the job has folded it
    truth = direct()
    for answer in (before, after):
        assert answer["balance"]["principal_fen"] == truth["wallets"][0] == 12_345
        assert answer["balance"]["members_with_balance"] == truth["with_balance"] == 1
        assert answer["cumulative"]["recharge_fen"] == 12_345
        assert answer["cumulative"]["recharge_count"] == 2
        assert answer["cumulative"]["recharge_members"] == 1
    assert before["today"]["recharge_fen"] == after["today"]["recharge_fen"] == 12_345
    sh01 = next(s for s in after["by_store"] if s["store_code"] == "sh01")
    assert (sh01["recharge_today_fen"], sh01["recharge_members"]) == (2_345, 1)


def test_a_run_interrupted_in_its_transaction_changes_nothing_and_the_next_run_folds_everything(app, org, make_member):
    # given operations, part of them folded
    rng = random.Random(7)
    members = [make_member() for _ in range(4)]
    random_operations(rng, members, [*org["stores"].values(), None], 60)
    summary.catch_up(batch_size=10, max_batches=2)
    folded = summarised()

    # when a run dies at the statement that moves the watermark (after the sums were written)
    def die(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE REPORT_TOTAL"):
            raise RuntimeError("worker killed")

    event.listen(db.engine, "before_cursor_execute", die)
    try:
        with pytest.raises(RuntimeError):
            summary.catch_up(batch_size=25)
    finally:
        event.remove(db.engine, "before_cursor_execute", die)
    # then nothing of that run is left: not the sums, not the watermark
    assert summarised() == folded
    # and the next run folds everything exactly once
    summary.catch_up(batch_size=25)
    assert summarised() == direct()


def test_a_young_gap_in_the_ids_stops_the_job_and_an_old_one_does_not(app):
    now = datetime(2026, 11, 23, 12, 0, 0)
    rows = [
        SimpleNamespace(id=i, created_at=now - timedelta(seconds=s)) for i, s in ((1, 300), (2, 300), (4, 5), (5, 1))
    ]
    # an id not yet visible (3) may still commit: stop before the rows after it
    assert [r.id for r in summary.settled(rows, 0, now, check_gaps=True)] == [1, 2]
    # once the row after the gap is older than the grace, the gap is a rolled-back insert: go on
    assert [r.id for r in summary.settled(rows, 0, now + timedelta(seconds=120), check_gaps=True)] == [1, 2, 4, 5]
    # SQLite commits ids in order: no gap check
    assert len(summary.settled(rows, 0, now, check_gaps=False)) == 4
