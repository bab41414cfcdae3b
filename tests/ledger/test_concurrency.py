"""The ledger under real concurrency on MariaDB: many threads, one session and connection each.

Each thread pushes its own app context (Flask-SQLAlchemy scopes the session to it) and waits on a
barrier so that all of them hit the database together. Whatever the interleaving, every call must end
as a success or as an ``AppError`` the caller can act on (never a raw database error: deadlocks are
retried by ``transactional``), and the invariants of DESIGN.md section 3 must hold afterwards.

SQLite serialises writers on the database file, so these tests run on MariaDB only
(``TEST_DATABASE_URL=mysql+pymysql://...``).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from mp_backend.config import engine_options
from mp_backend.errors import AppError, InsufficientBalance
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.ledger.service import Posting
from tests.conftest import MYSQL, assert_ledger_ok, count_rows, make_config

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://..."),
]

THREADS = 20


@pytest.fixture
def config(database_url: str):  # type: ignore[no-untyped-def]
    # One connection per thread: the default pool (5 + 10 overflow) would make some threads queue for a
    # connection instead of for the row lock, which is the race these tests are about.
    return make_config(
        database_url,
        SQLALCHEMY_ENGINE_OPTIONS={**engine_options(database_url), "pool_size": THREADS + 5, "max_overflow": 10},
    )


# ---------------------------------------------------------------------------------------------------
# Harness


@dataclass
class Outcome:
    """What one call ended as: a Posting, an AppError, or (a failure of the test) anything else."""

    label: str
    args: tuple[Any, ...]
    posting: Posting | None = None
    error: AppError | None = None

    @property
    def ok(self) -> bool:
        return self.posting is not None

    @property
    def code(self) -> str | None:
        return self.error.code if self.error is not None else None


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    unexpected: list[tuple[int, BaseException]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def of(self, label: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.label == label]


class Caller:
    """Handed to each thread's body: ``call(label, fn, *args, **kwargs)`` runs one ledger call."""

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index

    def call(self, label: str, fn: Callable[..., Posting], *args: Any, **kwargs: Any) -> Outcome:
        outcome = Outcome(label, args)
        try:
            outcome.posting = fn(*args, **kwargs)
        except AppError as error:  # a refusal the caller can act on; anything else is a bug
            outcome.error = error
        self.run.record(outcome)
        return outcome


def race(app: Flask, bodies: list[Callable[[Caller], None]], timeout: float = 60) -> Run:
    """Run each body in its own thread and app context, all released at once; return what happened."""
    run = Run()
    barrier = threading.Barrier(len(bodies), timeout=timeout)

    def main(index: int, body: Callable[[Caller], None]) -> None:
        try:
            with app.app_context():
                barrier.wait()
                body(Caller(run, index))
        except BaseException as error:  # noqa: BLE001 - reported by the test, with the thread's index
            with run.lock:
                run.unexpected.append((index, error))

    threads = [threading.Thread(target=main, args=(i, body), name=f"race-{i}") for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish (lock wait or deadlock?)"
    assert not run.unexpected, "unexpected errors (only AppError may escape a service call):\n" + "\n".join(
        f"thread {i}: {type(e).__module__}.{type(e).__name__}: {e}" for i, e in run.unexpected
    )
    db.session.rollback()  # the main thread reads the results from a fresh transaction
    return run


def only_codes(outcomes: list[Outcome], *allowed: str) -> None:
    codes = Counter(o.code for o in outcomes if not o.ok)
    assert set(codes) <= set(allowed), f"unexpected refusals: {dict(codes)}"


def available(member_id: int) -> int:
    db.session.rollback()
    return ledger.get_balance(member_id).available_fen


# ---------------------------------------------------------------------------------------------------
# Racing debits


def _debit_bodies(wallets: list[int], per_thread: int, seed: int) -> list[Callable[[Caller], None]]:
    def body_for(index: int) -> Callable[[Caller], None]:
        rng = random.Random(seed * 1000 + index)

        def body(c: Caller) -> None:
            for n in range(per_thread):
                member_id = rng.choice(wallets)
                amount = rng.randint(1, 4_000)
                c.call("debit", ledger.debit, member_id, amount, key=f"race-{index}-{n}", operator="test")

        return body

    return [body_for(i) for i in range(THREADS)]


def _assert_debits_add_up(run: Run, initial: dict[int, int], attempted: int, rows_before: int) -> None:
    debits = run.of("debit")
    accepted = [o for o in debits if o.ok]
    rejected = [o for o in debits if o.code == InsufficientBalance.code]
    assert len(accepted) + len(rejected) == attempted == len(debits), Counter(o.code for o in debits)
    assert accepted and rejected, "the amounts should both fit and overdraw: the test proves nothing otherwise"
    for member_id, before in initial.items():
        spent = sum(o.args[1] for o in accepted if o.args[0] == member_id)
        assert available(member_id) == before - spent
    assert all(not o.posting.replayed for o in accepted)  # type: ignore[union-attr]
    assert count_rows("ledger_entry") == rows_before + len(accepted)
    assert_ledger_ok()


def test_racing_debits_on_one_wallet(app, make_member):
    # given one wallet with 300.00 principal and 50.00 bonus (the proportional split takes from both)
    member_id = make_member(30_000, 5_000)
    rows_before = count_rows("ledger_entry")
    # when 20 threads each debit it 4 times at random amounts, 80 debits of ~20.00 in all
    run = race(app, _debit_bodies([member_id], per_thread=4, seed=1))
    # then every debit was accepted or refused for the balance, and what was accepted is what left
    _assert_debits_add_up(run, {member_id: 35_000}, attempted=THREADS * 4, rows_before=rows_before)
    assert available(member_id) < 4_000  # it ran dry: the last refusals were real


def test_racing_debits_on_a_few_wallets(app, make_member):
    # given three wallets
    wallets = [make_member(40_000, 10_000), make_member(20_000), make_member(5_000, 5_000)]
    rows_before = count_rows("ledger_entry")
    # when 20 threads debit them in random order (different wallets lock independently)
    run = race(app, _debit_bodies(wallets, per_thread=6, seed=2))
    # then
    _assert_debits_add_up(
        run,
        {wallets[0]: 50_000, wallets[1]: 20_000, wallets[2]: 10_000},
        attempted=THREADS * 6,
        rows_before=rows_before,
    )


# ---------------------------------------------------------------------------------------------------
# Everything at once on one wallet


def test_mixed_debits_holds_captures_voids_and_refunds_on_one_wallet(app, make_member):
    # given one wallet with 400.00 principal and 100.00 bonus
    member_id = make_member(40_000, 10_000)

    def body_for(index: int) -> Callable[[Caller], None]:
        rng = random.Random(3000 + index)

        def body(c: Caller) -> None:
            for n in range(3):
                k = f"{index}-{n}"
                paid = c.call("debit", ledger.debit, member_id, rng.randint(100, 3_000), key=f"d-{k}", operator="test")
                held = c.call("hold", ledger.hold, member_id, rng.randint(100, 3_000), key=f"h-{k}", operator="test")
                if paid.ok and rng.random() < 0.6:
                    assert paid.posting is not None
                    c.call(
                        "refund",
                        ledger.refund,
                        paid.posting.entry_id,
                        rng.randint(1, paid.posting.amount_fen),
                        key=f"r-{k}",
                        operator="test",
                    )
                if held.ok:
                    assert held.posting is not None
                    if rng.random() < 0.5:
                        c.call("void", ledger.void, held.posting.entry_id, key=f"v-{k}", operator="test")
                    else:
                        amount = rng.randint(1, held.posting.amount_fen)
                        captured = c.call(
                            "capture", ledger.capture, held.posting.entry_id, amount, key=f"c-{k}", operator="test"
                        )
                        if captured.posting is not None and rng.random() < 0.5:
                            c.call(
                                "refund",
                                ledger.refund,
                                captured.posting.entry_id,
                                amount,
                                key=f"cr-{k}",
                                operator="test",
                            )

        return body

    # when 20 threads pay, hold, refund, capture and void on it together
    run = race(app, [body_for(i) for i in range(THREADS)])

    # then only payments and holds may be refused (for the balance); what settles a hold or refunds a
    # payment of one's own always succeeds, since nothing else touches it
    only_codes(run.of("debit") + run.of("hold"), InsufficientBalance.code)
    for label in ("refund", "void", "capture"):
        assert all(o.ok for o in run.of(label)), [o.code for o in run.of(label) if not o.ok]
    assert any(not o.ok for o in run.of("debit") + run.of("hold")), "the wallet never ran dry"
    taken = sum(o.args[1] for o in run.of("debit") + run.of("capture") if o.ok)
    given_back = sum(o.args[1] for o in run.of("refund"))
    assert available(member_id) == 50_000 - taken + given_back
    assert ledger.get_balance(member_id).held_fen == 0  # every accepted hold was settled
    held = [o for o in run.of("hold") if o.ok]
    assert len(held) == len(run.of("void")) + len(run.of("capture"))
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# A new member's first credit against a crowd of debits


def test_first_credit_of_a_new_member_races_debits(app):
    from mp_backend.members import service as members

    # given a member just created, with an empty wallet
    member_id = members.create_member(name="新会员").id
    db.session.commit()

    def credit(c: Caller) -> None:
        c.call("credit", ledger.credit, member_id, 10_000, key="first-credit", operator="test")

    def debit_for(index: int) -> Callable[[Caller], None]:
        def body(c: Caller) -> None:
            c.call("debit", ledger.debit, member_id, 700, key=f"debit-{index}", operator="test")

        return body

    # when their first credit of 100.00 races 20 debits of 7.00 (140.00 in all)
    run = race(app, [credit] + [debit_for(i) for i in range(THREADS)])

    # then the credit went in, and each debit either found too little or came after the credit
    (credited,) = run.of("credit")
    assert credited.ok and credited.posting is not None
    debits = run.of("debit")
    only_codes(debits, InsufficientBalance.code)
    accepted = [o.posting for o in debits if o.posting is not None]
    # (none at all is a fair outcome too: on a loaded machine every debit may run before the credit)
    assert len(accepted) <= 10_000 // 700
    for posting in accepted:
        assert posting.entry_id > credited.posting.entry_id
    # a refused debit saw either the empty wallet (before the credit) or the 2.00 left after 14 debits
    seen = {o.error.details["available_fen"] for o in debits if o.error is not None}  # type: ignore[index]
    assert seen <= {0, 10_000 % 700}
    if 10_000 % 700 in seen:  # once the money was in, debits stopped only when it ran out
        assert len(accepted) == 10_000 // 700
    assert available(member_id) == 10_000 - 700 * len(accepted)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# One hold, one payment, many hands


def test_capture_or_void_of_one_hold_succeeds_once(app, make_member):
    # given a hold of 50.00
    member_id = make_member(20_000, 2_000)
    hold = ledger.hold(member_id, 5_000, key="the-hold", operator="test")

    def body_for(index: int) -> Callable[[Caller], None]:
        def body(c: Caller) -> None:
            if index % 2:
                c.call("void", ledger.void, hold.entry_id, key=f"void-{index}", operator="test")
            else:
                c.call("capture", ledger.capture, hold.entry_id, 1_000 + index, key=f"capture-{index}", operator="test")

        return body

    # when 20 threads try to capture or void it, each with its own request id
    run = race(app, [body_for(i) for i in range(THREADS)])

    # then exactly one settled it, and the others were told it is settled
    winners = [o for o in run.outcomes if o.ok]
    assert len(winners) == 1, [o.code for o in run.outcomes]
    only_codes(run.outcomes, "hold_already_settled")
    (winner,) = winners
    taken = winner.args[1] if winner.label == "capture" else 0
    assert available(member_id) == 22_000 - taken
    assert ledger.get_balance(member_id).held_fen == 0
    assert_ledger_ok()


@pytest.mark.parametrize("kind", ["debit", "capture"])
def test_racing_refunds_of_one_payment_never_exceed_it(app, make_member, kind):
    # given a payment of 100.00 that took from both buckets (a debit, or a capture of a bigger hold)
    member_id = make_member(30_000, 10_000)
    if kind == "debit":
        paid = ledger.debit(member_id, 10_000, key="pay", operator="test")
    else:
        hold = ledger.hold(member_id, 15_000, key="hold", operator="test")
        paid = ledger.capture(hold.entry_id, 10_000, key="pay", operator="test")
    before = available(member_id)

    def body_for(index: int) -> Callable[[Caller], None]:
        def body(c: Caller) -> None:
            c.call("refund", ledger.refund, paid.entry_id, 700, key=f"refund-{index}", operator="test")

        return body

    # when 20 threads refund 7.00 of it each (140.00 asked for)
    run = race(app, [body_for(i) for i in range(THREADS)])

    # then exactly as many as fit went through (14, 98.00), and the rest were refused
    refunds = run.of("refund")
    assert sum(o.ok for o in refunds) == 10_000 // 700
    only_codes(refunds, "refund_exceeds_payment")
    assert available(member_id) == before + 700 * (10_000 // 700)
    # the last 2.00 can still be refunded, and nothing more
    assert ledger.refund(paid.entry_id, 200, key="rest", operator="test").amount_fen == 200
    with pytest.raises(AppError) as refused:
        ledger.refund(paid.entry_id, 1, key="too-much", operator="test")
    assert refused.value.code == "refund_exceeds_payment"
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# One idempotency key, many senders


@pytest.mark.parametrize("operation", ["credit", "debit", "hold", "refund"])
def test_same_idempotency_key_from_many_threads_takes_effect_once(app, make_member, operation):
    # given a funded member (and, for a refund, a payment)
    member_id = make_member(50_000, 5_000)
    paid = ledger.debit(member_id, 5_000, key="pay", operator="test")
    before = available(member_id)
    calls: dict[str, Callable[[], Posting]] = {
        "credit": lambda: ledger.credit(member_id, 1_234, key="same-key", operator="test"),
        "debit": lambda: ledger.debit(member_id, 1_234, key="same-key", operator="test"),
        "hold": lambda: ledger.hold(member_id, 1_234, key="same-key", operator="test"),
        "refund": lambda: ledger.refund(paid.entry_id, 1_234, key="same-key", operator="test"),
    }

    def body(c: Caller) -> None:
        c.call(operation, calls[operation])

    # when 20 threads send the very same request at once
    run = race(app, [body] * THREADS)

    # then it took effect once: one row, and every caller got that row, all but one as a replay
    assert all(o.ok for o in run.outcomes), [o.code for o in run.outcomes]
    postings = [o.posting for o in run.outcomes if o.posting is not None]
    assert len({p.entry_id for p in postings}) == 1
    assert sum(not p.replayed for p in postings) == 1
    rows = db.session.execute(
        LedgerEntry.__table__.select().where(LedgerEntry.__table__.c.idempotency_key == "same-key")
    ).all()
    assert len(rows) == 1
    sign = {"credit": 1, "debit": -1, "hold": -1, "refund": 1}[operation]
    assert available(member_id) == before + sign * 1_234
    assert_ledger_ok()
