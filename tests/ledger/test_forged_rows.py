"""Rows that lie, appended behind the service's back: ``ledger check`` names each one, and only it.

Every forged row here is written the way a careful attacker (or a bad manual fix) would write it: by
raw SQL ``INSERT``, with running balances that follow from the row before it, the wallet moved to match,
and the refund guard (``payment_refundable``) kept in step. Replaying the running balances therefore
finds nothing: only the per-kind rules of DESIGN.md section 3 can see the lie (a credit moves one bucket
by its amount; a debit takes exactly its amount; a refund points at a payment of the same member and
never exceeds it; a withdrawal takes principal only; a reversal mirrors its credit).

Each test asserts that the checker reports the forged row itself (``Problem.entry_id``), nothing about
the correct rows before and after it, and that ``flask ledger check`` exits 1 naming the row. If the
schema refuses a forged row outright (a CHECK or a foreign key), that is a stronger guarantee and the
test accepts it, after making sure nothing was written.

Ledger rows are append-only in the database (triggers refuse ``UPDATE`` and ``DELETE``), which the last
tests check on the configured backend.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.check import check_ledger
from mp_backend.models_base import utcnow
from tests.conftest import assert_ledger_ok, count_rows

_forged_keys = itertools.count(1)

# The columns a forged row sets; any other NOT NULL column without a default must be added here.
FORGED_COLUMNS = (
    "member_id",
    "kind",
    "amount_fen",
    "principal_delta_fen",
    "bonus_delta_fen",
    "held_delta_fen",
    "principal_after_fen",
    "bonus_after_fen",
    "held_after_fen",
    "related_entry_id",
    "closes_entry_id",
    "store_id",
    "operator",
    "reference",
    "idempotency_key",
    "request_hash",
    "note",
    "created_at",
    "split_principal_fen",
)


def _unknown_required_columns() -> list[str]:
    columns = inspect(db.session.connection()).get_columns("ledger_entry")
    return [
        c["name"]
        for c in columns
        if not c["nullable"] and c.get("default") is None and c["name"] not in (*FORGED_COLUMNS, "id")
    ]


def true_balance(member_id: int) -> tuple[int, int, int]:
    """The member's balance as the sum of every delta so far (what a correct next row follows from)."""
    row = db.session.execute(
        text(
            "SELECT COALESCE(SUM(principal_delta_fen), 0), COALESCE(SUM(bonus_delta_fen), 0),"
            " COALESCE(SUM(held_delta_fen), 0) FROM ledger_entry WHERE member_id = :m"
        ),
        {"m": member_id},
    ).one()
    return (int(row[0]), int(row[1]), int(row[2]))


def has_refund_guard() -> bool:
    return inspect(db.session.connection()).has_table("payment_refundable")


def taken_by(payment_id: int) -> tuple[int, int]:
    """What a payment (debit or capture) took from (principal, bonus), from its own row and its hold's."""
    row = db.session.execute(
        text("SELECT kind, principal_delta_fen, bonus_delta_fen, related_entry_id FROM ledger_entry WHERE id = :id"),
        {"id": payment_id},
    ).one()
    assert row.kind in ("debit", "capture")
    if row.kind == "debit":
        return -row.principal_delta_fen, -row.bonus_delta_fen
    hold = db.session.execute(
        text("SELECT principal_delta_fen, bonus_delta_fen FROM ledger_entry WHERE id = :id"),
        {"id": row.related_entry_id},
    ).one()
    return -hold.principal_delta_fen - row.principal_delta_fen, -hold.bonus_delta_fen - row.bonus_delta_fen


def keep_refund_guard_in_step(payment_id: int, dp: int, dbonus: int) -> None:
    """A forged refund of a real payment also raises what the payment's guard says was refunded."""
    payment = db.session.execute(
        text("SELECT kind, member_id FROM ledger_entry WHERE id = :id"), {"id": payment_id}
    ).first()
    if not has_refund_guard() or payment is None or payment.kind not in ("debit", "capture"):
        return
    member_id = payment.member_id  # the guard belongs to the payment's member, whoever the refund paid
    exists = db.session.execute(
        text("SELECT 1 FROM payment_refundable WHERE payment_entry_id = :p"), {"p": payment_id}
    ).first()
    if exists:
        db.session.execute(
            text(
                "UPDATE payment_refundable SET refunded_principal_fen = refunded_principal_fen + :dp,"
                " refunded_bonus_fen = refunded_bonus_fen + :db WHERE payment_entry_id = :p"
            ),
            {"p": payment_id, "dp": dp, "db": dbonus},
        )
    else:
        tp, tb = taken_by(payment_id)
        db.session.execute(
            text(
                "INSERT INTO payment_refundable (payment_entry_id, member_id, taken_principal_fen, taken_bonus_fen,"
                " refunded_principal_fen, refunded_bonus_fen) VALUES (:p, :m, :tp, :tb, :dp, :db)"
            ),
            {"p": payment_id, "m": member_id, "tp": tp, "tb": tb, "dp": dp, "db": dbonus},
        )


def forge(
    member_id: int,
    kind: str,
    amount_fen: int,
    deltas: tuple[int, int, int],
    *,
    related_entry_id: int | None = None,
    closes_entry_id: int | None = None,
    after_error: tuple[int, int, int] = (0, 0, 0),
    split_principal_fen: int | None = None,
) -> int | None:
    """Append one row with consistent running balances and move the wallet to match; commit.

    ``after_error`` is added to the row's after-values only (not to the wallet), to forge a row whose
    recorded balance is wrong. Returns the new row's id, or None when the database refused the row (then
    nothing at all was written).
    """
    unknown = _unknown_required_columns()
    if unknown:
        pytest.fail(f"ledger_entry has new required columns {unknown}: teach forge() to fill them")
    before = true_balance(member_id)
    after = tuple(b + d for b, d in zip(before, deltas, strict=True))
    recorded = tuple(a + e for a, e in zip(after, after_error, strict=True))
    values = {
        "member_id": member_id,
        "kind": kind,
        "amount_fen": amount_fen,
        "principal_delta_fen": deltas[0],
        "bonus_delta_fen": deltas[1],
        "held_delta_fen": deltas[2],
        "principal_after_fen": recorded[0],
        "bonus_after_fen": recorded[1],
        "held_after_fen": recorded[2],
        "related_entry_id": related_entry_id,
        "closes_entry_id": closes_entry_id,
        "store_id": None,
        "operator": "sql",
        "reference": None,
        "idempotency_key": f"forged-{next(_forged_keys)}",
        "request_hash": "0" * 64,
        "note": "",
        "created_at": utcnow(),
        "split_principal_fen": split_principal_fen,
    }
    rows_before = count_rows("ledger_entry")
    try:
        result = db.session.execute(
            text(
                f"INSERT INTO ledger_entry ({', '.join(FORGED_COLUMNS)})"
                f" VALUES ({', '.join(':' + c for c in FORGED_COLUMNS)})"
            ),
            values,
        )
        entry_id = result.lastrowid
        db.session.execute(
            text("UPDATE wallet SET principal_fen = :p, bonus_fen = :b, held_fen = :h WHERE member_id = :m"),
            {"p": after[0], "b": after[1], "h": after[2], "m": member_id},
        )
        if kind == "refund" and related_entry_id is not None:
            keep_refund_guard_in_step(related_entry_id, deltas[0], deltas[1])
        db.session.commit()
    except DBAPIError:
        db.session.rollback()
        assert count_rows("ledger_entry") == rows_before, "a refused forgery left a row behind"
        return None
    assert isinstance(entry_id, int) and entry_id > 0
    return entry_id


# ---------------------------------------------------------------------------------------------------
# A small, correct history around each forgery


@dataclass
class History:
    a: int  # member A: 100.00 principal + 20.00 bonus, then a debit, a refunded capture ...
    b: int  # member B: 50.00 principal + 10.00 bonus, one debit
    a_debit: int  # A's debit of 30.00 (took 25.00 principal + 5.00 bonus)
    a_capture: int  # A's capture of 6.00 of a 10.00 hold
    b_debit: int
    correct_ids: list[int]


@pytest.fixture
def history(make_member) -> History:  # type: ignore[no-untyped-def]
    a, b = make_member(10_000, 2_000), make_member(5_000, 1_000)
    a_debit = ledger.debit(a, 3_000, key="a-debit", operator="t")
    hold = ledger.hold(a, 1_000, key="a-hold", operator="t")
    a_capture = ledger.capture(hold.entry_id, 600, key="a-capture", operator="t")
    ledger.refund(a_capture.entry_id, 100, key="a-capture-refund", operator="t")
    b_debit = ledger.debit(b, 1_200, key="b-debit", operator="t")
    assert (a_debit.principal_delta_fen, a_debit.bonus_delta_fen) == (-2_500, -500)
    assert_ledger_ok()  # the history itself is clean
    ids = list(db.session.execute(text("SELECT id FROM ledger_entry ORDER BY id")).scalars())
    return History(a, b, a_debit.entry_id, a_capture.entry_id, b_debit.entry_id, ids)


def then_correct_rows_follow(history: History) -> list[int]:
    """Correct service calls after the forgery, in both wallets: the checker must not blame them."""
    later = [
        ledger.credit(history.a, 300, key="after-a", operator="t").entry_id,
        ledger.debit(history.b, 50, key="after-b", operator="t").entry_id,
    ]
    return history.correct_ids + later


def assert_only_the_forged_row_is_named(forged: int | None, correct_ids: list[int], runner) -> None:  # type: ignore[no-untyped-def]
    if forged is None:  # the schema refused it: nothing to find
        assert_ledger_ok()
        return
    problems = check_ledger()
    report = "\n".join(map(str, problems)) or "(no findings)"
    # one finding, about the forged row, and about nothing else (no wallet-level finding either: the
    # wallets and running balances were kept consistent on purpose)
    assert len(problems) == 1, report
    assert [p.entry_id for p in problems] == [forged], report
    assert not set(correct_ids) & {p.entry_id for p in problems}, report
    assert re.search(rf"\bentry {forged}\b", str(problems[0])), report
    # and the admin command fails naming it
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1, result.output
    assert re.search(rf"\bentry {forged}\b", result.stderr), result.stderr
    assert "ledger check OK" not in result.output


# ---------------------------------------------------------------------------------------------------
# The forgeries of issue 10


def test_one_fen_credit_with_a_hundred_thousand_delta(history, runner):
    # given a credit row that says 0.01 but puts 1,000.00 of principal into A's wallet
    forged = forge(history.a, "credit", 1, (100_000, 0, 0))
    correct = then_correct_rows_follow(history)
    # when / then the checker names that row, and only it
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_bonus_credit_of_the_wrong_size(history, runner):
    # given a bonus credit of 1.00 that moves 2.00 (one bucket, but not by its amount)
    forged = forge(history.b, "credit", 100, (0, 200, 0))
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_credit_that_moves_both_buckets(history, runner):
    # given a credit of 5.00 split over both buckets (a credit moves exactly one)
    forged = forge(history.b, "credit", 500, (300, 200, 0))
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_refund_pointing_at_no_payment(history, runner):
    # given a refund of 5.00 into A's wallet that names no payment at all
    forged = forge(history.a, "refund", 500, (500, 0, 0), related_entry_id=None)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_refund_pointing_at_an_entry_that_does_not_exist(history, runner):
    # given a refund naming an entry id far beyond the last row
    missing = max(history.correct_ids) + 1_000
    forged = forge(history.a, "refund", 500, (500, 0, 0), related_entry_id=missing)
    # then the foreign key refuses it (SQLite with foreign_keys=ON and InnoDB both enforce it); if a
    # schema ever lets it in, the checker must name it instead
    correct = then_correct_rows_follow(history)
    if forged is not None:
        assert_only_the_forged_row_is_named(forged, correct, runner)
    else:
        assert (
            db.session.execute(
                text("SELECT COUNT(*) FROM ledger_entry WHERE related_entry_id = :m"), {"m": missing}
            ).scalar_one()
            == 0
        )
        assert_ledger_ok()


def test_refund_that_points_at_a_payment_that_is_not_a_payment(history, runner):
    # given a refund of 5.00 into A's wallet that points at A's first credit (not a debit or capture)
    first_credit = history.correct_ids[0]
    forged = forge(history.a, "refund", 500, (500, 0, 0), related_entry_id=first_credit)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_refund_of_one_members_debit_paid_into_another_wallet(history, runner):
    # given a refund of 10.00 of A's debit (well within what it took) credited to B's wallet
    forged = forge(history.b, "refund", 1_000, (800, 200, 0), related_entry_id=history.a_debit)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_one_fen_refund_giving_back_twenty_yuan(history, runner):
    # given a refund of 0.01 of A's debit (which took 25.00 principal) that gives back 20.00 principal
    forged = forge(history.a, "refund", 1, (2_000, 0, 0), related_entry_id=history.a_debit)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_debit_with_a_positive_delta(history, runner):
    # given a "debit" of 5.00 that adds 5.00 to A's principal
    forged = forge(history.a, "debit", 500, (500, 0, 0))
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_debit_whose_amount_was_multiplied_by_ten(history, runner):
    # given a debit that says 50.00 but takes 5.00 (4.00 principal + 1.00 bonus)
    forged = forge(history.a, "debit", 5_000, (-400, -100, 0))
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_withdrawal_taking_bonus(history, runner):
    # given a withdrawal of 3.00 from B that takes 3.00 of bonus (gift money is never paid out)
    forged = forge(history.b, "withdrawal", 300, (0, -300, 0))
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_withdrawal_taking_more_than_its_amount(history, runner):
    # given a withdrawal of 3.00 from B's principal that takes 30.00
    forged = forge(history.b, "withdrawal", 300, (-3_000, 0, 0))
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_reversal_of_a_debit(history, runner):
    # given a "reversal" that mirrors A's debit exactly (it gives the 30.00 back) and closes it
    forged = forge(
        history.a,
        "reversal",
        3_000,
        (2_500, 500, 0),
        related_entry_id=history.a_debit,
        closes_entry_id=history.a_debit,
    )
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_reversal_that_does_not_mirror_its_credit(history, runner):
    # given a reversal of A's 100.00 principal credit that takes only 1.00 back
    first_credit = history.correct_ids[0]
    forged = forge(
        history.a, "reversal", 10_000, (-100, 0, 0), related_entry_id=first_credit, closes_entry_id=first_credit
    )
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


# ---------------------------------------------------------------------------------------------------
# A row whose recorded balance is wrong: one finding, not one more for the correct row after it


def test_wrong_after_value_is_one_finding(history, runner):
    # given a debit of 5.00 from A, correct in every way except that its recorded principal-after is one
    # fen too high (the wallet holds the true balance), followed by a correct row that follows from the
    # true balance, not from the wrong record
    forged = forge(history.a, "debit", 500, (-500, 0, 0), after_error=(1, 0, 0))
    assert forged is not None
    next_row = forge(history.a, "credit", 200, (200, 0, 0))
    assert next_row is not None
    correct = then_correct_rows_follow(history)
    # when the ledger is checked
    problems = check_ledger()
    report = "\n".join(map(str, problems))
    # then the wrong row is the only finding: neither the row after it nor A's wallet is blamed
    assert [p.entry_id for p in problems] == [forged], report
    assert next_row not in {p.entry_id for p in problems}
    assert not set(correct) & {p.entry_id for p in problems}
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1
    assert re.search(rf"\bentry {forged}\b", result.stderr), result.stderr
    assert not re.search(rf"\bentry {next_row}\b", result.stderr), result.stderr


def test_a_correct_forgery_is_not_reported(history, runner):
    # given a row written by hand that obeys every rule (a 2.00 principal credit): the forging helper
    # itself writes consistent rows, so every finding above is the checker seeing the lie, not noise
    forged = forge(history.a, "credit", 200, (200, 0, 0))
    assert forged is not None
    then_correct_rows_follow(history)
    # then
    assert_ledger_ok()
    assert runner.invoke(args=["ledger", "check"]).exit_code == 0


# ---------------------------------------------------------------------------------------------------
# Append-only in the database


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET amount_fen = amount_fen + 1 WHERE id = :id",
        "UPDATE ledger_entry SET principal_delta_fen = 0, principal_after_fen = 0 WHERE id = :id",
        "UPDATE ledger_entry SET note = 'edited' WHERE id = :id",
        "UPDATE ledger_entry SET closes_entry_id = NULL WHERE id = :id",
        "DELETE FROM ledger_entry WHERE id = :id",
    ],
    ids=["update-amount", "update-deltas", "update-note", "update-link", "delete"],
)
def test_raw_update_and_delete_of_a_ledger_row_fail(history, statement):
    # given the last row of the history (and, for the link, the void that closes a hold)
    target = history.correct_ids[-1]
    if "closes_entry_id" in statement:
        target = db.session.execute(
            text("SELECT id FROM ledger_entry WHERE closes_entry_id IS NOT NULL ORDER BY id LIMIT 1")
        ).scalar_one()
    # (nothing refers to the last row, so a refusal can only come from the append-only rule, not a key)
    assert (
        not db.session.execute(
            text("SELECT id FROM ledger_entry WHERE related_entry_id = :id OR closes_entry_id = :id"), {"id": target}
        ).first()
        or "closes_entry_id" in statement
    )
    before = db.session.execute(text("SELECT * FROM ledger_entry ORDER BY id")).all()
    # when raw SQL tries to change or remove it
    with pytest.raises(DBAPIError):
        db.session.execute(text(statement), {"id": target})
        db.session.commit()
    db.session.rollback()
    # then the database refused it and every row is as it was
    assert db.session.execute(text("SELECT * FROM ledger_entry ORDER BY id")).all() == before
    assert_ledger_ok()


def test_inserting_is_still_allowed(history):
    # given the triggers that refuse UPDATE and DELETE, a new row is still an INSERT like any other
    forged = forge(history.b, "credit", 100, (100, 0, 0))
    # then (the tests above rely on it)
    assert forged is not None
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Splits no spending policy or refund rule gives (found by the outside review)


def only_row(problems, entry_id):  # type: ignore[no-untyped-def]
    assert [p.entry_id for p in problems] == [entry_id], "\n".join(map(str, problems))
    return problems[0]


def test_refund_that_gives_gift_money_back_as_principal_is_named(history):
    # given A's debit of 30.00 that took 25.00 principal and 5.00 bonus
    # when a forged refund of 6.00 gives all of it back as principal (pro rata: 5.00 + 1.00)
    forged = forge(history.a, "refund", 600, (600, 0, 0), related_entry_id=history.a_debit)
    # then the row is named for its split
    problem = only_row(check_ledger(), forged)
    assert problem.invariant == "split"
    assert "(500, 100)" in problem.detail


def test_debit_that_takes_only_bonus_under_the_proportional_policy_is_named(history):
    # given B with 38.00 principal and 8.00 bonus after its debit
    # when a forged debit of 8.00 takes it all from bonus (proportional: about 6.61 + 1.39)
    forged = forge(history.b, "debit", 800, (0, -800, 0))
    # then the row is named, unless the deployment says its debits may also be bonus-first
    assert only_row(check_ledger(), forged).invariant == "split"
    assert check_ledger(policies=("proportional", "bonus_first")) == []


def test_capture_that_takes_only_bonus_is_named(history):
    # given an open hold of A's of 10.00 (about 8.70 principal, 1.30 bonus)
    held = ledger.hold(history.a, 1_000, key="open-hold", operator="t")
    hp, hb = -held.principal_delta_fen, -held.bonus_delta_fen
    # when a forged capture of 1.00 takes it from the hold's bonus and releases the rest
    forged = forge(
        history.a,
        "capture",
        100,
        (hp, hb - 100, -1_000),
        related_entry_id=held.entry_id,
        closes_entry_id=held.entry_id,
    )
    # then
    assert only_row(check_ledger(), forged).invariant == "split"


# ---------------------------------------------------------------------------------------------------
# Holds that name their buckets (a recharge refund's take-back): the split must be the one recorded


def test_hold_with_a_split_no_policy_gives_and_no_named_buckets_is_named(history, runner):
    # given B with 38.00 principal and 8.00 bonus: a forged hold of 8.00 that takes it all from bonus
    # and does not record named buckets (proportional: about 6.61 + 1.39)
    forged = forge(history.b, "hold", 800, (0, -800, 800))
    correct = then_correct_rows_follow(history)
    # then the checker names it, as it names such a debit
    assert_only_the_forged_row_is_named(forged, correct, runner)
    assert only_row(check_ledger(), forged).invariant == "split"


def test_hold_whose_deltas_are_not_its_recorded_buckets_is_named(history, runner):
    # given a forged hold of 8.00 from B that records named buckets 8.00 principal + 0 bonus, but took
    # the 8.00 from bonus (gift money frozen, then paid back through WeChat as principal on capture)
    forged = forge(history.b, "hold", 800, (0, -800, 800), split_principal_fen=800)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)
    problem = only_row(check_ledger(), forged)
    assert problem.invariant == "split" and "(800, 0)" in problem.detail and "(0, 800)" in problem.detail


@pytest.mark.parametrize("named", [-100, 900], ids=["negative", "above-amount"])
def test_hold_recording_impossible_named_buckets_is_named(history, runner, named):
    # given a hold of 8.00 recording a principal share outside 0..8.00 (its deltas add up, the record lies)
    forged = forge(history.b, "hold", 800, (-named, named - 800, 800), split_principal_fen=named)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)


def test_debit_that_records_named_buckets_is_named(history, runner):
    # given a debit of 8.00 from B all from bonus that claims named buckets: only a hold may name them
    forged = forge(history.b, "debit", 800, (0, -800, 0), split_principal_fen=0)
    correct = then_correct_rows_follow(history)
    assert_only_the_forged_row_is_named(forged, correct, runner)
    assert "only a hold may name its buckets" in only_row(check_ledger(), forged).detail


def test_named_hold_its_capture_and_void_are_accepted(history, runner):
    # given holds of B's written by the service with named buckets (all bonus, then all principal)
    bonus_only = ledger.hold(history.b, 800, key="named-1", operator="t", buckets={"principal": 0, "bonus": 800})
    principal_only = ledger.hold(history.b, 500, key="named-2", operator="t", buckets={"principal": 500})
    # when one is captured in full and the other voided
    ledger.capture(bonus_only.entry_id, key="named-1-capture", operator="t")
    ledger.void(principal_only.entry_id, key="named-2-void", operator="t")
    then_correct_rows_follow(history)
    # then nothing is reported
    assert_ledger_ok()
    assert runner.invoke(args=["ledger", "check"]).exit_code == 0
