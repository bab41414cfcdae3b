"""The ledger under real concurrency on MariaDB, in worker PROCESSES.

Threads in one interpreter share the GIL, so the window between two statements of one call is rarely
where another thread runs: a race the thread tests passed 6 of 6 times failed every round in processes
(issue 10). Here 16 spawned processes, each with its own app, engine and connection, wait on one
barrier and then call the ledger service together.

The workers are started once per module (spawning 16 interpreters that import Flask and SQLAlchemy
takes seconds on a small machine) and each builds its app once per engine configuration; every race
sends each of them a list of calls and collects what each call ended as: a posting, an ``AppError``
code, or (a failure of the test) any other exception.

After every race the invariants hold (``check_ledger() == []``) and every balance is exact.
SQLite serialises writers on the file, so these run on MariaDB only.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import random
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from mp_backend.config import engine_options
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from tests.conftest import MYSQL, assert_ledger_ok, count_rows, make_config

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

PROCESSES = 16
RACE_TIMEOUT = 60


# ---------------------------------------------------------------------------------------------------
# The worker side (runs in the spawned processes; must be importable, hence module level)


def _posting_as_dict(posting: Any) -> dict[str, Any]:
    balance = posting.balance
    return {
        "entry_id": posting.entry_id,
        "member_id": posting.member_id,
        "kind": posting.kind,
        "amount_fen": posting.amount_fen,
        "deltas": (posting.principal_delta_fen, posting.bonus_delta_fen, posting.held_delta_fen),
        "balance": (balance.principal_fen, balance.bonus_fen, balance.held_fen),
        "replayed": posting.replayed,
    }


def _worker_main(index: int, database_url: str, tasks: Any, results: Any, barrier: Any) -> None:
    from mp_backend import create_app
    from mp_backend.errors import AppError
    from mp_backend.extensions import db as worker_db
    from mp_backend.ledger import service as worker_ledger
    from mp_backend.members import service as worker_members

    services = {"members": worker_members}

    def build(isolation: str) -> Any:
        options = {**engine_options(database_url), "isolation_level": isolation}
        return create_app(make_config(database_url, SQLALCHEMY_ENGINE_OPTIONS=options))

    apps: dict[str, Any] = {"READ COMMITTED": build("READ COMMITTED")}
    results.put((index, "ready"))
    while True:
        task = tasks.get()
        if task is None:
            return
        isolation, calls = task
        outcomes: list[tuple[str, Any]] = []
        try:
            if isolation not in apps:
                apps[isolation] = build(isolation)
            app = apps[isolation]
            with app.app_context():
                # connect before the barrier, so that the race is between statements, not handshakes
                worker_db.session.execute(text("SELECT 1"))
                worker_db.session.rollback()
                barrier.wait(timeout=RACE_TIMEOUT)
                for name, args, kwargs in calls:
                    if name.startswith("sql:"):  # a probe of the worker's own connection
                        outcomes.append(("sql", worker_db.session.execute(text(name[4:])).scalar()))
                        worker_db.session.rollback()
                        continue
                    try:
                        module, _, function = name.rpartition(".")  # "members.withdraw_offline": nested calls
                        posting = getattr(services.get(module, worker_ledger), function)(*args, **kwargs)
                        outcomes.append(("ok", _posting_as_dict(posting)))
                    except AppError as error:
                        outcomes.append(("error", error.code))
                    except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
                        outcomes.append(("crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
                worker_db.session.remove()
        except Exception as error:  # noqa: BLE001 - a broken barrier or app: the test fails on it
            outcomes.append(("crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        results.put((index, outcomes))


# ---------------------------------------------------------------------------------------------------
# The test side


@dataclass(frozen=True)
class Outcome:
    worker: int
    call: tuple[str, tuple[Any, ...], dict[str, Any]]
    status: str  # ok | error | crash | sql
    value: Any  # the posting as a dict, the error code, the traceback, or a probe's answer

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def code(self) -> str | None:
        return self.value if self.status == "error" else None

    @property
    def posting(self) -> dict[str, Any]:
        assert self.ok, (self.status, self.value)
        return self.value  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self.call[0]


class Workers:
    def __init__(self, database_url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(PROCESSES)
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(PROCESSES)]
        self.processes = [
            ctx.Process(
                target=_worker_main,
                args=(i, database_url, self.tasks[i], self.results, self.barrier),
                name=f"ledger-race-{i}",
                daemon=True,
            )
            for i in range(PROCESSES)
        ]
        for process in self.processes:
            process.start()
        # wait until every worker has imported everything and built its app: the races start warm
        for _ in range(PROCESSES):
            try:
                self.results.get(timeout=120)
            except queue_module.Empty:
                self.close()
                pytest.fail("the race workers did not start")

    def race(
        self,
        calls_per_worker: list[list[tuple[str, tuple[Any, ...], dict[str, Any]]]],
        *,
        isolation: str = "READ COMMITTED",
    ) -> list[Outcome]:
        """Send each worker its calls; all start together at the barrier; return every call's outcome."""
        assert len(calls_per_worker) == PROCESSES
        db.session.commit()  # everything the race needs is committed before it starts
        if self.barrier.broken:
            self.barrier.reset()
        for index, calls in enumerate(calls_per_worker):
            self.tasks[index].put((isolation, calls))
        collected: dict[int, list[tuple[str, Any]]] = {}
        while len(collected) < PROCESSES:
            try:
                index, outcomes = self.results.get(timeout=RACE_TIMEOUT * 2)
            except queue_module.Empty:
                dead = [p.name for p in self.processes if not p.is_alive()]
                pytest.fail(f"workers did not answer (lock wait or deadlock?); dead: {dead}")
            collected[index] = outcomes
        outcomes = [
            Outcome(index, call, status, value)
            for index in range(PROCESSES)
            for call, (status, value) in zip(calls_per_worker[index], collected[index], strict=False)
        ]
        crashes = [value for outcomes_ in collected.values() for status, value in outcomes_ if status == "crash"]
        assert not crashes, "only AppError may escape a ledger call:\n" + "\n".join(crashes)
        assert len(outcomes) == sum(map(len, calls_per_worker))
        db.session.rollback()  # read the results from a fresh transaction
        return outcomes

    def close(self) -> None:
        for tasks in self.tasks:
            tasks.put(None)
        deadline = time.monotonic() + 3
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes:  # idle, no transaction open: nothing is lost by stopping them
            if process.is_alive():
                process.terminate()
                process.join(1)


@pytest.fixture(scope="module")
def workers(database_url: str) -> Iterator[Workers]:
    pool = Workers(database_url)
    yield pool
    pool.close()


def call(name: str, *args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    return (name, args, kwargs)


def balance(member_id: int) -> tuple[int, int, int]:
    db.session.rollback()
    b = ledger.get_balance(member_id)
    return (b.principal_fen, b.bonus_fen, b.held_fen)


def codes(outcomes: list[Outcome]) -> Counter[str | None]:
    return Counter(o.code if not o.ok else "ok" for o in outcomes)


def rows_with_key(key: str) -> int:
    return db.session.execute(
        text("SELECT COUNT(*) FROM ledger_entry WHERE idempotency_key = :k"), {"k": key}
    ).scalar_one()


def split_half_up(amount: int, principal: int, bonus: int) -> tuple[int, int]:
    """The proportional policy, written out again: bonus share rounded to the nearest fen, halves up."""
    total = principal + bonus
    from_bonus = (2 * amount * bonus + total) // (2 * total)
    return amount - from_bonus, from_bonus


# ---------------------------------------------------------------------------------------------------
# 16 processes debiting one wallet


def test_sixteen_processes_debiting_one_wallet(app, make_member, workers):
    # given one wallet with 300.00 principal and 100.00 bonus
    member_id = make_member(30_000, 10_000)
    rows_before = count_rows("ledger_entry")
    rng = random.Random(10)
    plan = [
        [call("debit", member_id, rng.randint(500, 1_500), key=f"d-{w}-{n}", operator="race") for n in range(3)]
        for w in range(PROCESSES)
    ]
    asked = sum(c[1][1] for calls in plan for c in calls)
    assert asked > 40_000  # more is asked for than there is: some debits must be refused
    # when 16 processes send 3 debits each, all at once
    outcomes = workers.race(plan)
    # then every debit was accepted or refused for the balance, and what was accepted is what left
    assert set(codes(outcomes)) <= {"ok", "insufficient_balance"}, codes(outcomes)
    accepted = sorted((o.posting for o in outcomes if o.ok), key=lambda p: p["entry_id"])
    refused = [o for o in outcomes if o.code == "insufficient_balance"]
    assert accepted and refused
    assert len(accepted) + len(refused) == PROCESSES * 3
    assert not any(p["replayed"] for p in accepted)
    assert count_rows("ledger_entry") == rows_before + len(accepted)
    # and, replayed in id order (the order the wallet lock admitted them), each debit took the
    # proportional split of the balance it found, and says the balance it left
    principal, bonus = 30_000, 10_000
    for posting in accepted:
        p, b = split_half_up(posting["amount_fen"], principal, bonus)
        principal, bonus = principal - p, bonus - b
        assert posting["deltas"] == (-p, -b, 0), posting
        assert posting["balance"] == (principal, bonus, 0), posting
    assert balance(member_id) == (principal, bonus, 0)
    assert principal + bonus == 40_000 - sum(p["amount_fen"] for p in accepted)
    assert principal + bonus < 1_500  # it ran dry: the refusals were real
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# The same key sent 16 times at once


Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def _same_key_setup(operation: str, make_member) -> tuple[int, Call]:  # type: ignore[no-untyped-def]
    """A funded member, and the one call every process sends."""
    member_id = make_member(20_000, 5_000)
    if operation == "debit":
        return member_id, call("debit", member_id, 1_234, key="same-key", operator="race")
    if operation in ("capture", "void"):
        held = ledger.hold(member_id, 2_500, key="the-hold", operator="race")
        if operation == "capture":
            return member_id, call("capture", held.entry_id, 1_000, key="same-key", operator="race")
        return member_id, call("void", held.entry_id, key="same-key", operator="race")
    if operation == "withdraw":
        return member_id, call("withdraw", member_id, 1_234, key="same-key", operator="race", reason="退卡")
    assert operation == "reverse"
    mistake = ledger.credit(member_id, 777, bucket="bonus", key="mistake", operator="race")
    return member_id, call("reverse", mistake.entry_id, key="same-key", operator="race", reason="输错")


@pytest.mark.parametrize("operation", ["debit", "capture", "void", "withdraw", "reverse"])
def test_same_key_sent_sixteen_times_at_once_takes_effect_once(app, make_member, workers, operation):
    # given a funded member (with a hold, or a mistaken credit) and one request
    member_id, request = _same_key_setup(operation, make_member)
    before = balance(member_id)
    rows_before = count_rows("ledger_entry")
    # when 16 processes send that very request, under one key, at once
    outcomes = workers.race([[request] for _ in range(PROCESSES)])
    # then every caller got the same row, exactly one of them as the original
    assert all(o.ok for o in outcomes), codes(outcomes)
    postings = [o.posting for o in outcomes]
    assert len({p["entry_id"] for p in postings}) == 1, postings
    assert sum(not p["replayed"] for p in postings) == 1
    first = next(p for p in postings if not p["replayed"])
    assert all({**p, "replayed": False} == first for p in postings)
    # and it took effect once: one row under the key, the wallet moved by its deltas once
    assert rows_with_key("same-key") == 1
    assert count_rows("ledger_entry") == rows_before + 1
    after = tuple(b + d for b, d in zip(before, first["deltas"], strict=True))
    assert balance(member_id) == after == first["balance"]
    expected_kind = {"withdraw": "withdrawal", "reverse": "reversal"}.get(operation, operation)
    assert first["kind"] == expected_kind
    if operation == "withdraw":
        assert first["deltas"] == (-1_234, 0, 0)
    if operation == "reverse":
        assert first["deltas"] == (0, -777, 0)
    if operation == "void":
        assert first["deltas"][2] == -2_500 and sum(first["deltas"][:2]) == 2_500
    if operation == "capture":
        assert first["deltas"][2] == -2_500 and sum(first["deltas"][:2]) == 1_500
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# One hold, captured and voided at once


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_capture_against_void_of_one_hold(app, make_member, workers, isolation):
    # given a hold of 50.00 that took 40.00 principal and 10.00 bonus
    member_id = make_member(20_000, 5_000)
    held = ledger.hold(member_id, 5_000, key="the-hold", operator="race")
    assert (held.principal_delta_fen, held.bonus_delta_fen) == (-4_000, -1_000)
    before = balance(member_id)
    plan = [
        [call("capture", held.entry_id, 1_000 + 100 * w, key=f"capture-{w}", operator="race")]
        if w % 2
        else [call("void", held.entry_id, key=f"void-{w}", operator="race")]
        for w in range(PROCESSES)
    ]
    # when 8 processes capture it (each its own amount and key) and 8 void it, at once
    outcomes = workers.race(plan, isolation=isolation)
    # then exactly one settled it; the others were told it is settled
    winners = [o for o in outcomes if o.ok]
    assert len(winners) == 1, codes(outcomes)
    assert codes(outcomes) == Counter({"ok": 1, "hold_already_settled": PROCESSES - 1})
    (winner,) = winners
    if winner.name == "capture":
        captured = winner.call[1][1]
        p, b = split_half_up(captured, 4_000, 1_000)
        expected = (4_000 - p, 1_000 - b, -5_000)
    else:
        expected = (4_000, 1_000, -5_000)
    assert winner.posting["deltas"] == expected
    assert balance(member_id) == tuple(x + d for x, d in zip(before, expected, strict=True))
    assert (
        db.session.execute(
            text("SELECT COUNT(*) FROM ledger_entry WHERE related_entry_id = :h"), {"h": held.entry_id}
        ).scalar_one()
        == 1
    )
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# A reversal against debits that drain the credit


def test_reversal_against_debits_draining_the_credit(app, make_member, workers):
    # given a member whose only money is one credit of 100.00
    member_id = make_member()
    credited = ledger.credit(member_id, 10_000, key="the-credit", operator="race")
    plan = [
        [call("reverse", credited.entry_id, key=f"reverse-{w}", operator="race", reason="输错")]
        if w < 3
        else [call("debit", member_id, 800, key=f"debit-{w}", operator="race")]
        for w in range(PROCESSES)
    ]
    # when 3 processes reverse the credit (each its own key) while 13 debit 8.00 each (104.00 in all)
    outcomes = workers.race(plan)
    reversals = [o for o in outcomes if o.name == "reverse"]
    debits = [o for o in outcomes if o.name == "debit"]
    # then either a reversal came first (all of the credit went back, no debit found money) or a debit
    # did (no reversal can take back money already spent, and 12 debits fit): never both
    if any(o.ok for o in reversals):
        assert codes(reversals) in (
            Counter({"ok": 1, "already_reversed": 2}),
            Counter({"ok": 1, "already_reversed": 1, "insufficient_balance": 1}),
            Counter({"ok": 1, "insufficient_balance": 2}),
        ), codes(reversals)
        assert codes(debits) == Counter({"insufficient_balance": 13}), codes(debits)
        assert balance(member_id) == (0, 0, 0)
    else:
        assert codes(reversals) == Counter({"insufficient_balance": 3}), codes(reversals)
        assert codes(debits) == Counter({"ok": 12, "insufficient_balance": 1}), codes(debits)
        assert balance(member_id) == (10_000 - 12 * 800, 0, 0)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# 16 refunds of one payment, at READ COMMITTED and at REPEATABLE READ


def refund_split(amount: int, taken: tuple[int, int], refunded: tuple[int, int]) -> tuple[int, int]:
    """DESIGN.md section 3: pro rata on the running total; the refund that completes the payment
    restores the exact remainder."""
    tp, tb = taken
    rp, rb = refunded
    total, so_far = tp + tb, rp + rb
    if so_far + amount == total:
        return tp - rp, tb - rb
    target_bonus = (2 * (so_far + amount) * tb + total) // (2 * total)
    to_bonus = max(0, min(target_bonus - rb, amount, tb - rb))
    to_principal = amount - to_bonus
    if to_principal > tp - rp:
        to_principal = tp - rp
        to_bonus = amount - to_principal
    return to_principal, to_bonus


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ"])
def test_sixteen_refunds_never_exceed_the_payment(app, make_member, workers, isolation):
    # given a debit of 100.00 that took 75.00 principal and 25.00 bonus
    member_id = make_member(30_000, 10_000)
    paid = ledger.debit(member_id, 10_000, key="pay", operator="race")
    assert (paid.principal_delta_fen, paid.bonus_delta_fen) == (-7_500, -2_500)
    before = balance(member_id)
    # when 16 processes each refund 7.00 of it (112.00 asked for), at the given isolation level
    outcomes = workers.race(
        [[call("refund", paid.entry_id, 700, key=f"refund-{w}", operator="race")] for w in range(PROCESSES)],
        isolation=isolation,
    )
    # then 14 went through (98.00) and 2 were refused: never more than the payment took
    assert codes(outcomes) == Counter({"ok": 14, "refund_exceeds_payment": 2}), codes(outcomes)
    refunds = sorted((o.posting for o in outcomes if o.ok), key=lambda p: p["entry_id"])
    refunded = (0, 0)
    for posting in refunds:  # each refund restored its pro-rata share of the running total
        to_p, to_b = refund_split(700, (7_500, 2_500), refunded)
        assert posting["deltas"] == (to_p, to_b, 0), posting
        refunded = (refunded[0] + to_p, refunded[1] + to_b)
    assert refunded == (7_350, 2_450)
    assert balance(member_id) == (before[0] + 7_350, before[1] + 2_450, 0)
    total = db.session.execute(
        text("SELECT SUM(amount_fen) FROM ledger_entry WHERE kind = 'refund' AND related_entry_id = :p"),
        {"p": paid.entry_id},
    ).scalar_one()
    assert total == 9_800
    # the last 2.00 can still be refunded, exactly the remainder of each bucket, and nothing more
    rest = ledger.refund(paid.entry_id, 200, key="rest", operator="race")
    assert (rest.principal_delta_fen, rest.bonus_delta_fen) == (150, 50)
    with pytest.raises(Exception) as refused:
        ledger.refund(paid.entry_id, 1, key="too-much", operator="race")
    assert getattr(refused.value, "code", None) == "refund_exceeds_payment"
    assert_ledger_ok()


def test_workers_run_at_the_isolation_level_asked_for(app, workers):
    # the REPEATABLE READ race above proves nothing unless the workers really ran at that level
    for isolation in ("READ COMMITTED", "REPEATABLE READ"):
        outcomes = workers.race([[call("sql:SELECT @@tx_isolation")] for _ in range(PROCESSES)], isolation=isolation)
        assert {o.value for o in outcomes} == {isolation.replace(" ", "-")}


# ---------------------------------------------------------------------------------------------------
# Ledger calls inside a larger service call (permission + ledger row + audit row in one transaction)


@pytest.mark.parametrize("operation", ["withdraw_offline", "reverse_credit"])
def test_same_key_nested_in_a_staff_action_sixteen_times_at_once_takes_effect_once(
    org, make_member, workers, operation
):
    # given a member with 50.00 principal (or a mistaken credit of 50.00), and an HQ admin
    admin = org["staff"]["admin"]
    member_id = make_member(5_000)
    if operation == "withdraw_offline":  # the whole principal: a copy that lost the race finds nothing left
        request = call("members.withdraw_offline", member_id, 5_000, key="same-key", staff_id=admin, reason="退卡")
    else:
        credit = ledger.credit(member_id, 5_000, key="mistake", operator="race")
        request = call("members.reverse_credit", credit.entry_id, key="same-key", staff_id=admin, reason="输错")
    rows_before = count_rows("ledger_entry")
    audits_before = count_rows("audit_log")
    # when 16 processes send the same staff action, under one key, at once
    outcomes = workers.race([[request] for _ in range(PROCESSES)])
    # then every one of them is answered with the one row (never insufficient_balance or already_reversed)
    assert all(o.ok for o in outcomes), codes(outcomes)
    assert len({o.posting["entry_id"] for o in outcomes}) == 1
    assert sum(not o.posting["replayed"] for o in outcomes) == 1
    assert count_rows("ledger_entry") == rows_before + 1
    assert count_rows("audit_log") == audits_before + 1  # and one audit row, not one per copy
    assert_ledger_ok()
