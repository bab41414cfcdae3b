"""The ledger checker: silent on a healthy ledger, and names the wallet when data is corrupted behind
the service's back (raw SQL, as a bad manual fix in production would be)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.check import check_ledger
from mp_backend.members import service as members
from mp_backend.models_base import utcnow
from tests.conftest import append_only_off, assert_ledger_ok


def run_sql(sql: str, **params: object) -> None:
    db.session.execute(text(sql), params)
    db.session.commit()


def tamper(sql: str, **params: object) -> None:
    """Change a ledger row as someone who dropped the append-only triggers could."""
    with append_only_off():
        run_sql(sql, **params)


@contextmanager
def check_constraints_off() -> Iterator[None]:
    """Let raw SQL write what the CHECK constraints forbid, to see that the checker catches it too."""
    conn = db.session.connection()
    mysql = conn.dialect.name == "mysql"
    conn.exec_driver_sql("SET SESSION check_constraint_checks = 0" if mysql else "PRAGMA ignore_check_constraints = ON")
    try:
        yield
    finally:
        conn = db.session.connection()
        conn.exec_driver_sql(
            "SET SESSION check_constraint_checks = 1" if mysql else "PRAGMA ignore_check_constraints = OFF"
        )
        db.session.commit()


@pytest.fixture
def busy_ledger(org, make_member):  # type: ignore[no-untyped-def]
    """Two members who have done one of everything; returns (member a, member b, a's open hold id)."""
    a, b = make_member(10_000, 2_000), make_member(5_000, 500)
    admin = org["staff"]["admin"]
    for member_id in (a, b):
        paid = ledger.debit(member_id, 1_500, key=f"d-{member_id}", operator="t")
        ledger.refund(paid.entry_id, 700, key=f"r-{member_id}", operator="t")
        held = ledger.hold(member_id, 900, key=f"h-{member_id}", operator="t")
        captured = ledger.capture(held.entry_id, 400, key=f"c-{member_id}", operator="t")
        ledger.refund(captured.entry_id, 400, key=f"rc-{member_id}", operator="t")
        voided = ledger.hold(member_id, 300, key=f"h2-{member_id}", operator="t")
        ledger.void(voided.entry_id, key=f"v-{member_id}", operator="t")
        members.withdraw_offline(member_id, 100, key=f"w-{member_id}", staff_id=admin, reason="退卡")
        mistake = ledger.credit(member_id, 50, key=f"m-{member_id}", operator="t")
        members.reverse_credit(mistake.entry_id, key=f"rv-{member_id}", staff_id=admin, reason="输错")
    open_hold = ledger.hold(a, 250, key="open-hold", operator="t")
    return a, b, open_hold.entry_id


def named(problems: list) -> set[int | None]:  # type: ignore[type-arg]
    return {p.member_id for p in problems}


def test_clean_after_normal_operations(busy_ledger):
    # given a ledger written only by the service
    # when it is checked
    problems = check_ledger()
    # then there is nothing to report
    assert problems == []


def test_clean_with_small_batches(busy_ledger):
    # given the same ledger, read back a few rows at a time
    # when it is checked
    problems = check_ledger(batch_size=3)
    # then the batching changes nothing
    assert problems == []


def test_wallet_that_disagrees_with_its_ledger_is_named(busy_ledger):
    # given one fen added to a wallet without a ledger row
    a, b, _ = busy_ledger
    run_sql("UPDATE wallet SET principal_fen = principal_fen + 1 WHERE member_id = :m", m=b)
    # when the ledger is checked
    problems = check_ledger()
    # then exactly that wallet is reported, for that reason
    assert [(p.member_id, p.invariant) for p in problems] == [(b, "balance != sum of ledger")]
    assert str(problems[0]).startswith(f"wallet {b}: ")


@pytest.mark.parametrize("column", ["principal_fen", "bonus_fen", "held_fen"])
def test_every_bucket_is_compared(busy_ledger, column):
    # given one bucket of a wallet lowered by one fen
    a, _, _ = busy_ledger
    run_sql(f"UPDATE wallet SET {column} = {column} - 1 WHERE member_id = :m", m=a)
    # when the ledger is checked
    problems = check_ledger()
    # then the wallet is named
    assert [(p.member_id, p.invariant) for p in problems] == [(a, "balance != sum of ledger")]


def test_row_whose_after_values_do_not_replay_is_named(busy_ledger):
    # given a row in the middle of a's history whose recorded balance-after is off by one
    a, _, _ = busy_ledger
    middle = db.session.execute(
        text("SELECT id FROM ledger_entry WHERE member_id = :m AND kind = 'refund' ORDER BY id LIMIT 1"), {"m": a}
    ).scalar_one()
    tamper("UPDATE ledger_entry SET bonus_after_fen = bonus_after_fen + 1 WHERE id = :id", id=middle)
    # when the ledger is checked
    problems = check_ledger()
    # then that row is reported, and only that row: the correct rows after it follow from the deltas
    assert [(p.member_id, p.invariant, p.entry_id) for p in problems] == [(a, "replay", middle)]
    assert problems[0].detail.startswith(f"entry {middle} ")


def test_negative_bucket_is_named(make_member):
    # given a member with 1.00, and a debit of 1.50 written by hand, with matching wallet and after-values
    member_id = make_member(100)
    other = make_member(100)
    with check_constraints_off():
        db.session.execute(
            text(
                "INSERT INTO ledger_entry (member_id, kind, amount_fen, principal_delta_fen, bonus_delta_fen,"
                " held_delta_fen, principal_after_fen, bonus_after_fen, held_after_fen, operator,"
                " idempotency_key, request_hash, note, created_at)"
                " VALUES (:m, 'debit', 150, -150, 0, 0, -50, 0, 0, 'sql', 'by-hand', 'x', '', :now)"
            ),
            {"m": member_id, "now": utcnow()},
        )
        db.session.execute(text("UPDATE wallet SET principal_fen = -50 WHERE member_id = :m"), {"m": member_id})
    # when the ledger is checked
    problems = check_ledger()
    # then the row and the wallet are both reported as negative, and only for that member
    assert named(problems) == {member_id}
    assert [p.invariant for p in problems] == ["negative bucket", "negative bucket"]
    assert any("entry" in p.detail and "-50" in p.detail for p in problems)
    assert any(p.detail.startswith("wallet (-50,") for p in problems)
    assert other not in named(problems)


def test_held_that_disagrees_with_the_open_holds_is_named(busy_ledger):
    # given a's open hold whose amount was changed afterwards (held_fen and the deltas still say 2.50)
    a, _, open_hold = busy_ledger
    tamper("UPDATE ledger_entry SET amount_fen = amount_fen + 1 WHERE id = :id", id=open_hold)
    # when the ledger is checked
    problems = check_ledger()
    # then the hold breaks its kind's rule, and a's held figure does not match its open holds
    assert [(p.member_id, p.invariant, p.entry_id) for p in problems] == [
        (a, "kind rule", open_hold),
        (a, "held != open holds", None),
    ]
    assert problems[1].detail == "held 250, open holds 251"


def test_hold_reopened_behind_the_ledgers_back_is_named(busy_ledger):
    # given a void whose link to its hold is removed: the hold looks open, but nothing is held for it
    _, b, _ = busy_ledger
    tamper("UPDATE ledger_entry SET closes_entry_id = NULL WHERE member_id = :m AND kind = 'void'", m=b)
    # when the ledger is checked
    problems = check_ledger()
    # then the void is reported for closing nothing, and b's held figure for not matching its open holds
    assert [(p.member_id, p.invariant) for p in problems] == [(b, "kind rule"), (b, "held != open holds")]
    assert problems[1].detail == "held 0, open holds 300"


def test_refund_beyond_the_payment_is_reported(busy_ledger):
    # given a refund row re-pointed at a payment that took less than it gives back
    a, _, _ = busy_ledger
    small = ledger.debit(a, 10, key="small", operator="t")
    big_refund = db.session.execute(
        text("SELECT id FROM ledger_entry WHERE member_id = :m AND kind = 'refund' ORDER BY id LIMIT 1"), {"m": a}
    ).scalar_one()
    tamper("UPDATE ledger_entry SET related_entry_id = :p WHERE id = :id", p=small.entry_id, id=big_refund)
    # when the ledger is checked
    problems = check_ledger()
    # then the refund is named for exceeding the payment it now points at (the refund guard, which
    # recorded it against the first payment, is out of step with the ledger too)
    assert problems[0].entry_id == big_refund
    assert "refund exceeds payment" in problems[0].invariant
    assert f"payment {small.entry_id} " in problems[0].detail
    assert {p.invariant for p in problems[1:]} == {"refund guard out of step"}


# ---------------------------------------------------------------------------------------------------
# flask ledger check


def test_cli_check_passes_on_a_clean_ledger(busy_ledger, runner):
    # given a healthy ledger
    # when the admin command runs
    result = runner.invoke(args=["ledger", "check"])
    # then it exits 0 and says so
    assert result.exit_code == 0, result.output
    assert "ledger check OK" in result.output
    assert_ledger_ok()


def test_cli_check_fails_naming_the_wallet(busy_ledger, runner):
    # given a wallet changed behind the ledger's back
    a, b, _ = busy_ledger
    run_sql("UPDATE wallet SET principal_fen = principal_fen + 1 WHERE member_id = :m", m=a)
    # when the admin command runs
    result = runner.invoke(args=["ledger", "check"])
    # then it exits 1, naming that wallet (and not the healthy one) on stderr
    assert result.exit_code == 1, result.output
    assert f"wallet {a}: balance != sum of ledger" in result.stderr
    assert f"wallet {b}:" not in result.stderr
    assert "ledger check FAILED: 1 problem(s)" in result.stderr
    assert "ledger check OK" not in result.output
