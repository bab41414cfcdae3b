"""A hypothesis state machine: random sequences of every ledger operation, against a plain model.

The model below is written from DESIGN.md section 3 and issue 10, not from ``ledger/policy.py``: three
members' wallets (principal, bonus, held), the ``proportional`` policy rounding the bonus share to the
nearest fen (half up), holds captured in full or in part or voided, refunds pro rata on the running total
(the last one restores the exact remainder) and never beyond the payment, withdrawals of principal only,
reversals of a credit at most once and only while its money is there, frozen cards that take no new
money and pay nothing (while captures, voids, refunds, withdrawals and reversals still settle), and keys
that take effect once (the same request again is a replay of the first result; a different request
under a used key is ``idempotency_conflict``).

Every operation's result is checked against the model: the error code, or the new row's kind, amount,
deltas, balance after and ``replayed`` flag; every wallet is checked after every step; and each example
ends with ``check_ledger() == []``. Each example starts from empty tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import text

from mp_backend.errors import AppError
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.members import service as members
from tests import conftest
from tests.conftest import assert_ledger_ok

MEMBERS = 3
OPERATOR = "stateful"

# ---------------------------------------------------------------------------------------------------
# The rules, written out again


def half_up(amount: int, part: int, whole: int) -> int:
    """amount * part / whole to the nearest integer, halves up."""
    return (2 * amount * part + whole) // (2 * whole)


def split_spend(amount: int, principal: int, bonus: int) -> tuple[int, int]:
    """(from principal, from bonus) of a spend the buckets cover, ``proportional`` policy."""
    from_bonus = half_up(amount, bonus, principal + bonus)
    return amount - from_bonus, from_bonus


def split_refund(amount: int, taken: tuple[int, int], refunded: tuple[int, int]) -> tuple[int, int]:
    tp, tb = taken
    rp, rb = refunded
    total, so_far = tp + tb, rp + rb
    if so_far + amount == total:
        return tp - rp, tb - rb
    to_bonus = max(0, min(half_up(so_far + amount, tb, total) - rb, amount, tb - rb))
    to_principal = amount - to_bonus
    if to_principal > tp - rp:
        to_principal = tp - rp
        to_bonus = amount - to_principal
    return to_principal, to_bonus


def test_the_model_rules_on_worked_examples() -> None:
    # the model is only as good as its rules: the examples of issue 10 and DESIGN.md section 3
    assert split_spend(9_000, 100_000, 10_000) == (8_182, 818)
    assert split_spend(9, 100_000, 10_000) == (8, 1)  # small payments take bonus too
    assert split_spend(1, 1, 1) == (0, 1)  # the half goes up, to bonus
    assert split_spend(20_000, 10_000, 10_000) == (10_000, 10_000)
    # pay 20,000 from 10,000 + 10,000, refund half: half of each bucket comes back
    assert split_refund(10_000, (10_000, 10_000), (0, 0)) == (5_000, 5_000)
    assert split_refund(10_000, (10_000, 10_000), (5_000, 5_000)) == (5_000, 5_000)
    # 7.00 refunds of a 75.00 + 25.00 payment keep to the ratio on the running total
    assert split_refund(700, (7_500, 2_500), (0, 0)) == (525, 175)
    assert split_refund(1, (7_500, 2_500), (0, 0)) == (1, 0)
    assert split_refund(1, (7_500, 2_500), (1, 0)) == (0, 1)  # 2 of 4: half a fen, up
    assert split_refund(2, (7_500, 2_500), (0, 0)) == (1, 1)
    # the last refund restores the exact remainder
    assert split_refund(3, (1, 2), (0, 0)) == (1, 2)
    assert split_refund(2, (1, 2), (1, 0)) == (0, 2)


@dataclass(frozen=True)
class Request:
    kind: str  # credit debit hold capture void refund withdrawal reversal
    member: int | None = None  # member index: credit, debit, hold, withdrawal
    target: int | None = None  # entry id: capture, void, refund, reversal
    amount: int | None = None  # None: a capture of the whole hold, a void, a reversal
    bucket: str | None = None  # credit


@dataclass
class Expected:
    code: str | None = None  # a refusal
    replay_of: int | None = None  # the entry a replay answers with
    member: int | None = None
    amount: int = 0
    deltas: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Entry:
    kind: str
    member: int
    amount: int
    deltas: tuple[int, int, int]
    closed: bool = False  # holds: captured or voided; credits: reversed
    taken: tuple[int, int] = (0, 0)  # payments (debit, capture): what they took
    refunded: tuple[int, int] = (0, 0)


@dataclass
class Model:
    wallets: list[list[int]] = field(default_factory=lambda: [[0, 0, 0] for _ in range(MEMBERS)])
    frozen: list[bool] = field(default_factory=lambda: [False] * MEMBERS)
    entries: dict[int, Entry] = field(default_factory=dict)
    done: dict[str, tuple[Request, int]] = field(default_factory=dict)  # key -> (request, entry id)

    def expect(self, key: str, r: Request) -> Expected:
        if key in self.done:
            first, entry_id = self.done[key]
            return Expected(replay_of=entry_id) if first == r else Expected(code="idempotency_conflict")
        if r.kind in ("credit", "debit", "hold", "withdrawal"):
            assert r.member is not None and r.amount is not None
            principal, bonus, _held = self.wallets[r.member]
            if r.kind != "withdrawal" and self.frozen[r.member]:
                return Expected(code="member_frozen")
            if r.kind == "credit":
                deltas = (r.amount, 0, 0) if r.bucket == "principal" else (0, r.amount, 0)
                return Expected(member=r.member, amount=r.amount, deltas=deltas)
            if r.kind == "withdrawal":
                if r.amount > principal:
                    return Expected(code="insufficient_balance")
                return Expected(member=r.member, amount=r.amount, deltas=(-r.amount, 0, 0))
            if r.amount > principal + bonus:
                return Expected(code="insufficient_balance")
            p, b = split_spend(r.amount, principal, bonus)
            return Expected(member=r.member, amount=r.amount, deltas=(-p, -b, r.amount if r.kind == "hold" else 0))
        assert r.target is not None
        target = self.entries.get(r.target)
        if r.kind in ("capture", "void"):
            if target is None or target.kind != "hold":
                return Expected(code="hold_not_found")
            if target.closed:
                return Expected(code="hold_already_settled")
            hp, hb = -target.deltas[0], -target.deltas[1]
            if r.kind == "void":
                return Expected(member=target.member, amount=target.amount, deltas=(hp, hb, -target.amount))
            amount = target.amount if r.amount is None else r.amount
            if amount > target.amount:
                return Expected(code="capture_exceeds_hold")
            p, b = split_spend(amount, hp, hb)
            return Expected(member=target.member, amount=amount, deltas=(hp - p, hb - b, -target.amount))
        if r.kind == "refund":
            assert r.amount is not None
            if target is None or target.kind not in ("debit", "capture"):
                return Expected(code="payment_not_found")
            if r.amount > sum(target.taken) - sum(target.refunded):
                return Expected(code="refund_exceeds_payment")
            p, b = split_refund(r.amount, target.taken, target.refunded)
            return Expected(member=target.member, amount=r.amount, deltas=(p, b, 0))
        assert r.kind == "reversal"
        if target is None or target.kind != "credit":
            return Expected(code="entry_not_reversible")
        if target.closed:
            return Expected(code="already_reversed")
        principal, bonus, _held = self.wallets[target.member]
        dp, db_ = -target.deltas[0], -target.deltas[1]
        if principal + dp < 0 or bonus + db_ < 0:
            return Expected(code="insufficient_balance")
        return Expected(member=target.member, amount=target.amount, deltas=(dp, db_, 0))

    def apply(self, key: str, r: Request, e: Expected, entry_id: int) -> None:
        assert e.member is not None
        wallet = self.wallets[e.member]
        for i, delta in enumerate(e.deltas):
            wallet[i] += delta
            assert wallet[i] >= 0, "the model itself went negative"
        entry = Entry(r.kind, e.member, e.amount, e.deltas)
        if r.kind == "debit":
            entry.taken = (-e.deltas[0], -e.deltas[1])
        elif r.kind in ("capture", "void", "reversal"):
            assert r.target is not None
            closed = self.entries[r.target]
            closed.closed = True
            if r.kind == "capture":
                entry.taken = (-closed.deltas[0] - e.deltas[0], -closed.deltas[1] - e.deltas[1])
        elif r.kind == "refund":
            assert r.target is not None
            payment = self.entries[r.target]
            payment.refunded = (payment.refunded[0] + e.deltas[0], payment.refunded[1] + e.deltas[1])
            assert payment.refunded[0] <= payment.taken[0] and payment.refunded[1] <= payment.taken[1]
        self.entries[entry_id] = entry
        self.done[key] = (r, entry_id)


# ---------------------------------------------------------------------------------------------------
# The machine

member_index = st.integers(0, MEMBERS - 1)
pick = st.integers(0, 10_000)  # an index into what exists, modulo its number
fen = st.integers(1, 3_000)
# an amount relative to what it acts on: a quarter of it (1-5 quarters: 5/4 is too much), all, or one more
wrong_kind = st.sampled_from([False, False, False, True])  # now and then, an entry of the wrong kind
relative = st.one_of(st.tuples(st.just("quarters"), st.integers(1, 5)), st.sampled_from([("all", 0), ("all+1", 0)]))


def resolve(drawn: int | tuple[str, int], whole: int) -> int:
    if isinstance(drawn, int):
        return drawn
    how, quarters = drawn
    if how == "all":
        return max(1, whole)
    if how == "all+1":
        return whole + 1
    return max(1, -(-whole * quarters // 4))


# One rule draws the operation: hypothesis switches whole rules off at random per example ("swarm
# testing"), which left most examples without a debit or a refund; within one rule the mix is ours.
OPERATIONS = {
    "credit": st.fixed_dictionaries(
        dict(member=member_index, amount=st.integers(1, 5_000), bucket=st.sampled_from(["principal", "bonus"]))
    ),
    "spend": st.fixed_dictionaries(
        dict(member=member_index, drawn=st.one_of(fen, relative), kind=st.sampled_from(["debit", "hold"]))
    ),
    "capture": st.fixed_dictionaries(dict(index=pick, drawn=st.one_of(st.none(), relative), wrong_kind=wrong_kind)),
    "void": st.fixed_dictionaries(dict(index=pick, wrong_kind=wrong_kind)),
    "refund": st.fixed_dictionaries(dict(index=pick, drawn=st.one_of(fen, relative, relative), wrong_kind=wrong_kind)),
    "withdraw": st.fixed_dictionaries(dict(member=member_index, drawn=st.one_of(fen, relative))),
    "reverse": st.fixed_dictionaries(dict(index=pick, wrong_kind=wrong_kind)),
    "freeze": st.fixed_dictionaries(dict(member=member_index, frozen=st.booleans())),
    "replay": st.fixed_dictionaries(dict(index=pick)),
    "reuse_key": st.fixed_dictionaries(dict(index=pick, amount=fen, member=member_index)),
}
WEIGHTS = {
    "credit": 1,
    "spend": 3,
    "capture": 2,
    "void": 1,
    "refund": 3,
    "withdraw": 1,
    "reverse": 1,
    "freeze": 1,
    "replay": 1,
    "reuse_key": 1,
}
operation = st.one_of(
    *[st.tuples(st.just(name), OPERATIONS[name]) for name, weight in WEIGHTS.items() for _ in range(weight)]
)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        db.session.remove()
        conftest._empty_tables()
        self.member_ids = [members.create_member(name=f"s{i}").id for i in range(MEMBERS)]
        db.session.commit()
        self.model = Model()
        self.postings: dict[int, ledger.Posting] = {}
        self.sent: list[tuple[str, Request]] = []
        self.keys = 0

    # -- sending -------------------------------------------------------------------------------

    def send(self, key: str, r: Request) -> ledger.Posting:
        ids = self.member_ids
        if r.kind == "credit":
            return ledger.credit(ids[r.member], r.amount, key=key, operator=OPERATOR, bucket=r.bucket)  # type: ignore[arg-type,index]
        if r.kind == "debit":
            return ledger.debit(ids[r.member], r.amount, key=key, operator=OPERATOR)  # type: ignore[arg-type,index]
        if r.kind == "hold":
            return ledger.hold(ids[r.member], r.amount, key=key, operator=OPERATOR)  # type: ignore[arg-type,index]
        if r.kind == "capture":
            return ledger.capture(r.target, r.amount, key=key, operator=OPERATOR)  # type: ignore[arg-type]
        if r.kind == "void":
            return ledger.void(r.target, key=key, operator=OPERATOR)  # type: ignore[arg-type]
        if r.kind == "refund":
            return ledger.refund(r.target, r.amount, key=key, operator=OPERATOR)  # type: ignore[arg-type]
        if r.kind == "withdrawal":
            return ledger.withdraw(ids[r.member], r.amount, key=key, operator=OPERATOR, reason="退卡")  # type: ignore[arg-type,index]
        assert r.kind == "reversal"
        return ledger.reverse(r.target, key=key, operator=OPERATOR, reason="输错")  # type: ignore[arg-type]

    def run(self, r: Request, key: str | None = None) -> None:
        if key is None:
            self.keys += 1
            key = f"k{self.keys}"
        expected = self.model.expect(key, r)
        context = f"{key} {r} expected {expected}"
        rows = self.count_rows()
        if expected.code is not None:
            with pytest.raises(AppError) as refused:
                self.send(key, r)
            assert refused.value.code == expected.code, context
            assert self.count_rows() == rows, context  # a refusal writes nothing
            return
        posting = self.send(key, r)
        if expected.replay_of is not None:
            first = self.postings[expected.replay_of]
            assert posting.replayed, context
            assert self.fields(posting) == self.fields(first), context
            assert self.count_rows() == rows, context  # a replay writes nothing
            return
        assert not posting.replayed, context
        assert expected.member is not None
        assert posting.member_id == self.member_ids[expected.member], context
        assert (posting.kind, posting.amount_fen) == (r.kind, expected.amount), context
        deltas = (posting.principal_delta_fen, posting.bonus_delta_fen, posting.held_delta_fen)
        assert deltas == expected.deltas, context
        assert self.count_rows() == rows + 1, context
        self.model.apply(key, r, expected, posting.entry_id)
        wallet = self.model.wallets[expected.member]
        balance = posting.balance
        assert (balance.principal_fen, balance.bonus_fen, balance.held_fen) == tuple(wallet), context
        assert balance.available_fen == wallet[0] + wallet[1], context
        self.postings[posting.entry_id] = posting
        self.sent.append((key, r))

    @staticmethod
    def fields(p: ledger.Posting) -> tuple[Any, ...]:
        b = p.balance
        deltas = (p.principal_delta_fen, p.bonus_delta_fen, p.held_delta_fen)
        return (p.entry_id, p.member_id, p.kind, p.amount_fen, deltas, (b.principal_fen, b.bonus_fen, b.held_fen))

    @staticmethod
    def count_rows() -> int:
        count = db.session.execute(text("SELECT COUNT(*) FROM ledger_entry")).scalar_one()
        db.session.rollback()
        return count

    def ids_of(self, *kinds: str) -> list[int]:
        return sorted(i for i, e in self.model.entries.items() if e.kind in kinds)

    # -- rules ---------------------------------------------------------------------------------

    @initialize(
        funds=st.lists(st.tuples(st.integers(1, 20_000), st.integers(0, 8_000)), min_size=MEMBERS, max_size=MEMBERS)
    )
    def fund(self, funds: list[tuple[int, int]]) -> None:
        # every member starts with principal and (mostly) bonus, through ordinary credits: hypothesis
        # switches rules off at random per example, and an example without credits would test nothing
        for member, (principal, bonus) in enumerate(funds):
            self.run(Request("credit", member=member, amount=principal, bucket="principal"))
            if bonus:
                self.run(Request("credit", member=member, amount=bonus, bucket="bonus"))

    def do_credit(self, member: int, amount: int, bucket: str) -> None:
        self.run(Request("credit", member=member, amount=amount, bucket=bucket))

    def do_spend(self, member: int, drawn: Any, kind: str) -> None:
        available = sum(self.model.wallets[member][:2])
        self.run(Request(kind, member=member, amount=resolve(drawn, available)))

    def do_capture(self, index: int, drawn: Any, wrong_kind: bool) -> None:
        targets = self.ids_of("debit", "credit") if wrong_kind else self.ids_of("hold")
        if not targets:
            return
        target = targets[index % len(targets)]
        amount = None if drawn is None else resolve(drawn, self.model.entries[target].amount)
        self.run(Request("capture", target=target, amount=amount))

    def do_void(self, index: int, wrong_kind: bool) -> None:
        targets = self.ids_of("capture", "refund") if wrong_kind else self.ids_of("hold")
        if targets:
            self.run(Request("void", target=targets[index % len(targets)]))

    def do_refund(self, index: int, drawn: Any, wrong_kind: bool) -> None:
        targets = self.ids_of("hold", "refund", "credit") if wrong_kind else self.ids_of("debit", "capture")
        if not targets:
            return
        target = targets[index % len(targets)]
        payment = self.model.entries[target]
        left = sum(payment.taken) - sum(payment.refunded)
        # quarters of what the payment took; "all" is what is left of it, "all+1" one fen too much
        amount = resolve(drawn, left) if drawn in (("all", 0), ("all+1", 0)) else resolve(drawn, payment.amount)
        self.run(Request("refund", target=target, amount=amount))

    def do_withdraw(self, member: int, drawn: Any) -> None:
        principal = self.model.wallets[member][0]
        self.run(Request("withdrawal", member=member, amount=resolve(drawn, principal)))

    def do_reverse(self, index: int, wrong_kind: bool) -> None:
        targets = self.ids_of("debit", "refund", "hold") if wrong_kind else self.ids_of("credit")
        if targets:
            self.run(Request("reversal", target=targets[index % len(targets)]))

    def do_freeze(self, member: int, frozen: bool) -> None:
        ledger.set_frozen(self.member_ids[member], frozen)
        db.session.commit()
        self.model.frozen[member] = frozen

    def do_replay(self, index: int) -> None:
        # the very same request again under its key: the first result, marked as a replay
        if self.sent:
            key, request = self.sent[index % len(self.sent)]
            self.run(request, key=key)

    def do_reuse_key(self, index: int, amount: int, member: int) -> None:
        # a different request under a key that already took effect
        if not self.sent:
            return
        key, first = self.sent[index % len(self.sent)]
        other = Request("credit", member=member, amount=amount, bucket="bonus")
        if other == first:
            other = Request("credit", member=member, amount=amount + 1, bucket="bonus")
        self.run(other, key=key)

    @rule(op=operation)
    def step(self, op: tuple[str, dict[str, Any]]) -> None:
        name, args = op
        getattr(self, f"do_{name}")(**args)

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def wallets_are_the_models(self) -> None:
        for index, member_id in enumerate(self.member_ids):
            balance = ledger.get_balance(member_id)
            assert (balance.principal_fen, balance.bonus_fen, balance.held_fen) == tuple(self.model.wallets[index]), (
                f"member {index}"
            )
        db.session.rollback()

    def teardown(self) -> None:
        db.session.rollback()
        assert self.count_rows() == len(self.model.entries)
        assert_ledger_ok()


def test_random_operation_sequences_agree_with_the_model(app) -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
