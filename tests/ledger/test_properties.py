"""Random sequences of ledger operations, run against the service and against a small model.

The model below is an independent reimplementation of the rules in ``ledger/policy.py`` and
``ledger/service.py`` (DESIGN.md section 3): two buckets plus held, the three spending policies, holds
captured in part or voided, refunds pro rata on the running total (the last one the exact remainder)
and never more per bucket than taken, keys that
take effect once. After every operation the service's answer (or refusal) must be the model's; after
every sequence the wallets must be the model's, and replaying the ledger rows from nothing (summing
deltas in id order) must give every row's after-values and every wallet.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from mp_backend.errors import AppError
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.ledger.policy import POLICIES
from mp_backend.members import service as members
from tests.conftest import _empty_tables, assert_ledger_ok, count_rows

MEMBERS = 2


# ---------------------------------------------------------------------------------------------------
# The model


def nearest(x: Fraction) -> int:
    """To the nearest integer, halves up."""
    return math.floor(x + Fraction(1, 2))


def model_refund(amount: int, taken: list[int], refunded: list[int]) -> tuple[int, int]:
    """(to principal, to bonus): the payment's proportion on the running total, the exact rest at the end."""
    left_p, left_b = taken[0] - refunded[0], taken[1] - refunded[1]
    if amount == left_p + left_b:
        return left_p, left_b
    to_b = nearest(Fraction((sum(refunded) + amount) * taken[1], sum(taken))) - refunded[1]
    to_b = max(0, min(to_b, amount, left_b))
    to_p = amount - to_b
    if to_p > left_p:
        to_p, to_b = left_p, amount - left_p
    return to_p, to_b


def model_split(amount: int, principal: int, bonus: int, policy: str) -> tuple[int, int]:
    """(from principal, from bonus) of a spend the two buckets can cover."""
    if policy == "proportional":
        from_bonus = nearest(Fraction(amount * bonus, principal + bonus)) if principal + bonus else 0
    elif policy == "principal_first":
        from_bonus = amount - min(amount, principal)
    else:
        from_bonus = min(amount, bonus)
    return amount - from_bonus, from_bonus


@dataclass(frozen=True)
class Request:
    kind: str  # credit debit hold capture void refund
    member: int | None = None  # member index, for credit / debit / hold
    target: int | None = None  # entry id, for capture / void / refund
    amount: int | None = None
    bucket: str | None = None


@dataclass
class Hold:
    member: int
    amount: int
    principal: int
    bonus: int
    closed: bool = False


@dataclass
class Payment:
    member: int
    taken: list[int]  # [principal, bonus]
    refunded: list[int] = field(default_factory=lambda: [0, 0])


@dataclass
class Outcome:
    """What the model expects: a new row (member index and deltas), a replay, or a refusal."""

    code: str | None = None
    member: int | None = None
    amount: int = 0
    deltas: tuple[int, int, int] = (0, 0, 0)
    replay_of: int | None = None


class Model:
    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.wallets = [[0, 0, 0] for _ in range(MEMBERS)]
        self.holds: dict[int, Hold] = {}
        self.payments: dict[int, Payment] = {}
        self.done: dict[str, tuple[Request, int]] = {}  # key -> (request, entry id)
        self.rows: dict[int, tuple[int, tuple[int, int, int]]] = {}  # entry id -> (member index, deltas)

    def expect(self, key: str, r: Request) -> Outcome:
        if key in self.done:
            first, entry_id = self.done[key]
            return Outcome(replay_of=entry_id) if first == r else Outcome(code="idempotency_conflict")
        if r.kind == "credit":
            assert r.member is not None and r.amount is not None
            deltas = (r.amount, 0, 0) if r.bucket == "principal" else (0, r.amount, 0)
            return Outcome(member=r.member, amount=r.amount, deltas=deltas)
        if r.kind in ("debit", "hold"):
            assert r.member is not None and r.amount is not None
            principal, bonus, _ = self.wallets[r.member]
            if r.amount > principal + bonus:
                return Outcome(code="insufficient_balance")
            p, b = model_split(r.amount, principal, bonus, self.policy)
            return Outcome(member=r.member, amount=r.amount, deltas=(-p, -b, r.amount if r.kind == "hold" else 0))
        if r.kind in ("capture", "void"):
            assert r.target is not None
            hold = self.holds[r.target]
            if hold.closed:
                return Outcome(code="hold_already_settled")
            amount = hold.amount if r.amount is None or r.kind == "void" else r.amount
            if amount > hold.amount:
                return Outcome(code="capture_exceeds_hold")
            p, b = (0, 0) if r.kind == "void" else model_split(amount, hold.principal, hold.bonus, self.policy)
            return Outcome(member=hold.member, amount=amount, deltas=(hold.principal - p, hold.bonus - b, -hold.amount))
        if r.kind == "refund":
            assert r.target is not None and r.amount is not None
            payment = self.payments[r.target]
            left_p = payment.taken[0] - payment.refunded[0]
            left_b = payment.taken[1] - payment.refunded[1]
            if r.amount > left_p + left_b:
                return Outcome(code="refund_exceeds_payment")
            to_p, to_b = model_refund(r.amount, payment.taken, payment.refunded)
            return Outcome(member=payment.member, amount=r.amount, deltas=(to_p, to_b, 0))
        raise AssertionError(r)

    def apply(self, key: str, r: Request, outcome: Outcome, entry_id: int) -> None:
        assert outcome.member is not None
        wallet = self.wallets[outcome.member]
        for i, delta in enumerate(outcome.deltas):
            wallet[i] += delta
            assert wallet[i] >= 0, "the model itself went negative"
        dp, db_, dh = outcome.deltas
        if r.kind == "hold":
            self.holds[entry_id] = Hold(outcome.member, outcome.amount, -dp, -db_)
        elif r.kind in ("capture", "void"):
            assert r.target is not None
            hold = self.holds[r.target]
            hold.closed = True
            if r.kind == "capture":
                self.payments[entry_id] = Payment(outcome.member, [hold.principal - dp, hold.bonus - db_])
        elif r.kind == "debit":
            self.payments[entry_id] = Payment(outcome.member, [-dp, -db_])
        elif r.kind == "refund":
            assert r.target is not None
            refunded = self.payments[r.target].refunded
            refunded[0] += dp
            refunded[1] += db_
        self.done[key] = (r, entry_id)
        self.rows[entry_id] = (outcome.member, outcome.deltas)


# ---------------------------------------------------------------------------------------------------
# Operations as hypothesis draws them: indices are resolved against what exists at that point

member_index = st.integers(0, MEMBERS - 1)
pick = st.integers(0, 1_000)  # an index into the holds / payments / earlier requests, modulo their number
# An amount is drawn as fen (6 and up), as 1-5 quarters of what the operation acts on (5/4 is too much,
# and partial captures and refunds add up), or as exactly all of it or one fen more (the boundaries).
fen = st.integers(6, 1_500)
quarters = st.integers(1, 5)
boundary = st.sampled_from(["all", "all+1"])
drawn_amount = st.one_of(fen, fen, quarters, boundary)

credit_op = st.tuples(st.just("credit"), member_index, st.integers(1, 5_000), st.sampled_from(["principal", "bonus"]))
debit_op = st.tuples(st.just("debit"), member_index, drawn_amount)
hold_op = st.tuples(st.just("hold"), member_index, drawn_amount)
capture_op = st.tuples(st.just("capture"), pick, st.one_of(st.none(), quarters, boundary))
void_op = st.tuples(st.just("void"), pick)
refund_op = st.tuples(st.just("refund"), pick, st.one_of(quarters, quarters, boundary))
replay_op = st.tuples(st.just("replay"), pick)  # the same request again under its key
reuse_key_op = st.tuples(st.just("reuse_key"), pick, fen)  # an earlier key for a debit of member 0
policy_op = st.tuples(st.just("policy"), st.sampled_from(POLICIES))
# one_of chooses its branches evenly: repeat the ones that need something to act on
operations = st.one_of(
    credit_op,
    debit_op,
    debit_op,
    hold_op,
    hold_op,
    capture_op,
    capture_op,
    void_op,
    refund_op,
    refund_op,
    replay_op,
    replay_op,
    reuse_key_op,
    policy_op,
)
# both members start with principal and bonus (through ordinary, replayable credits; 0 means none)
opening = st.lists(st.tuples(st.integers(0, 5_000), st.integers(0, 3_000)), min_size=MEMBERS, max_size=MEMBERS)


def resolve(drawn: int | str | None, whole: int, rest: int) -> int | None:
    """The fen of a drawn amount: quarters of ``whole``, "all" / "all+1" of ``rest`` (never below 1 fen)."""
    if drawn is None or (isinstance(drawn, int) and drawn > 5):
        return drawn
    if drawn == "all":
        return max(1, rest)
    if drawn == "all+1":
        return rest + 1
    return max(1, math.ceil(whole * drawn / 4))  # type: ignore[operator]


def fresh_tables() -> None:
    """Each example starts from empty tables (the app fixture empties them once per test)."""
    db.session.rollback()
    _empty_tables()


def send(key: str, r: Request, member_ids: list[int]) -> ledger.Posting:
    op = "t"
    if r.kind == "credit":
        assert r.member is not None and r.bucket is not None
        return ledger.credit(member_ids[r.member], r.amount, bucket=r.bucket, key=key, operator=op)  # type: ignore[arg-type]
    if r.kind == "debit":
        assert r.member is not None
        return ledger.debit(member_ids[r.member], r.amount, key=key, operator=op)  # type: ignore[arg-type]
    if r.kind == "hold":
        assert r.member is not None
        return ledger.hold(member_ids[r.member], r.amount, key=key, operator=op)  # type: ignore[arg-type]
    if r.kind == "capture":
        return ledger.capture(r.target, r.amount, key=key, operator=op)  # type: ignore[arg-type]
    if r.kind == "void":
        return ledger.void(r.target, key=key, operator=op)  # type: ignore[arg-type]
    return ledger.refund(r.target, r.amount, key=key, operator=op)  # type: ignore[arg-type]


def replay_ledger(member_ids: list[int]) -> tuple[list[str], dict[int, tuple[int, int, int]]]:
    """Sum the deltas of every row in id order from nothing; return mismatches and the final sums."""
    e = LedgerEntry.__table__
    sums: dict[int, list[int]] = {m: [0, 0, 0] for m in member_ids}
    mismatches = []
    for row in db.session.execute(select(e).order_by(e.c.id)).mappings():
        running = sums[row["member_id"]]
        running[0] += row["principal_delta_fen"]
        running[1] += row["bonus_delta_fen"]
        running[2] += row["held_delta_fen"]
        recorded = [row["principal_after_fen"], row["bonus_after_fen"], row["held_after_fen"]]
        if recorded != running:
            mismatches.append(f"entry {row['id']}: after {recorded}, replay {running}")
    return mismatches, {m: (s[0], s[1], s[2]) for m, s in sums.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=st.sampled_from(POLICIES), opening=opening, then=st.lists(operations, min_size=15, max_size=50))
def test_random_operations_agree_with_the_model(
    app, policy: str, opening: list[tuple[int, int]], then: list[tuple[Any, ...]]
) -> None:
    # given empty tables, two new members and the merchant's policy
    fresh_tables()
    app.config["SPENDING_POLICY"] = policy
    member_ids = [members.create_member(name=f"m{i}").id for i in range(MEMBERS)]
    model = Model(policy)
    sent: list[tuple[str, Request]] = []
    postings: dict[int, ledger.Posting] = {}
    steps = [
        ("credit", m, fen, bucket)
        for m, funds in enumerate(opening)
        for fen, bucket in zip(funds, ("principal", "bonus"), strict=True)
        if fen
    ] + then

    # when the operations are applied one by one to the service and to the model
    for step, (op, *args) in enumerate(steps):
        if op == "policy":
            app.config["SPENDING_POLICY"] = model.policy = args[0]
            continue
        key = f"k{step}"
        if op == "credit":
            request = Request("credit", member=args[0], amount=args[1], bucket=args[2])
        elif op in ("debit", "hold"):
            available = sum(model.wallets[args[0]][:2])
            request = Request(op, member=args[0], amount=resolve(args[1], available, available))
        elif op in ("capture", "void"):
            holds = sorted(model.holds)
            if not holds:
                continue
            target = holds[args[0] % len(holds)]
            held = model.holds[target].amount
            request = Request(op, target=target, amount=resolve(args[1], held, held) if op == "capture" else None)
        elif op == "refund":
            payments = sorted(model.payments)
            if not payments:
                continue
            target = payments[args[0] % len(payments)]
            payment = model.payments[target]
            taken, left = sum(payment.taken), sum(payment.taken) - sum(payment.refunded)
            request = Request("refund", target=target, amount=resolve(args[1], taken, left))
        elif op == "replay":
            if not sent:
                continue
            key, request = sent[args[0] % len(sent)]
        else:  # reuse_key
            if not sent:
                continue
            key = sent[args[0] % len(sent)][0]
            request = Request("debit", member=0, amount=args[1])
        sent.append((key, request))

        expected = model.expect(key, request)
        outcome = expected.code or ("new row" if expected.replay_of is None else "replay")
        event(f"{request.kind}: {outcome}")  # --hypothesis-show-statistics shows what the draws exercised
        context = f"step {step}: {key} {request} expected {expected}"
        if expected.code is not None:
            rows = count_rows("ledger_entry")
            with pytest.raises(AppError) as refused:
                send(key, request, member_ids)
            assert refused.value.code == expected.code, context
            assert count_rows("ledger_entry") == rows, context
            continue
        posting = send(key, request, member_ids)
        if expected.replay_of is not None:
            # then a replay answers with the first result and writes nothing
            assert posting == dataclasses.replace(postings[expected.replay_of], replayed=True), context
            continue
        # then a new row: the model's deltas, and the model's balance after it
        assert not posting.replayed, context
        assert posting.member_id == member_ids[expected.member], context  # type: ignore[index]
        assert (posting.kind, posting.amount_fen) == (request.kind, expected.amount), context
        deltas = (posting.principal_delta_fen, posting.bonus_delta_fen, posting.held_delta_fen)
        assert deltas == expected.deltas, context
        model.apply(key, request, expected, posting.entry_id)
        assert posting.balance == ledger.Balance(*model.wallets[expected.member]), context  # type: ignore[index]
        postings[posting.entry_id] = posting

    # then the wallets are the model's
    for index, member_id in enumerate(member_ids):
        assert ledger.get_balance(member_id) == ledger.Balance(*model.wallets[index])
    # and the ledger holds exactly the model's rows, with the model's deltas
    e = LedgerEntry.__table__
    stored = {
        row.id: (member_ids.index(row.member_id), (row.principal_delta_fen, row.bonus_delta_fen, row.held_delta_fen))
        for row in db.session.execute(select(e).order_by(e.c.id))
    }
    assert stored == model.rows
    # and replaying the rows from nothing gives every row's after-values and every wallet
    mismatches, sums = replay_ledger(member_ids)
    assert mismatches == []
    assert sums == {m: tuple(model.wallets[i]) for i, m in enumerate(member_ids)}
    assert_ledger_ok(policies=POLICIES)  # the example switches policies as it goes


def test_model_split_matches_the_documented_examples() -> None:
    # given the model's own split (the property test is only as good as it)
    # when / then it gives the hand-worked splits of test_operations
    assert model_split(5_500, 10_000, 1_000, "proportional") == (5_000, 500)
    assert model_split(2, 2, 1, "proportional") == (1, 1)
    assert model_split(2, 3, 1, "proportional") == (1, 1)
    assert model_refund(300, [700, 300], [0, 0]) == (210, 90)
    assert model_refund(400, [700, 300], [420, 180]) == (280, 120)
    assert model_refund(1, [2, 1], [1, 0]) == (0, 1)
    assert model_split(1_200, 1_000, 500, "principal_first") == (1_000, 200)
    assert model_split(1_200, 1_000, 500, "bonus_first") == (700, 500)
    assert model_split(0, 0, 0, "proportional") == (0, 0)


def test_fresh_tables_empties_what_an_example_writes(app, make_member) -> None:
    # given rows in every table an example writes
    member_id = make_member(500, 100)
    ledger.debit(member_id, 50, key="d", operator="t")
    assert count_rows("ledger_entry") == 3
    # when the next example starts
    fresh_tables()
    # then they are gone
    assert [count_rows(t) for t in ("ledger_entry", "wallet", "member")] == [0, 0, 0]
    assert db.session.execute(text("SELECT COUNT(*) FROM member_openid")).scalar_one() == 0
