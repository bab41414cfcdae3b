"""What the outside review of the ledger found, each fixed and kept fixed: a refund guard row removed or
changed by hand; the append-only rule under SQLite's REPLACE. (Forged splits: test_forged_rows.py.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.check import check_ledger
from tests.conftest import assert_ledger_ok


def test_a_removed_refund_guard_row_is_rebuilt_from_the_ledger_not_from_zero(make_member):
    # given a debit of 100.00 refunded 40.00, whose guard row is then deleted by hand
    member_id = make_member(10_000)
    paid = ledger.debit(member_id, 10_000, key="pay", operator="t")
    ledger.refund(paid.entry_id, 4_000, key="refund-1", operator="t")
    db.session.execute(text("DELETE FROM payment_refundable"))
    db.session.commit()
    # then the checker names the refund the guard no longer records
    assert [p.invariant for p in check_ledger()] == ["refund guard"]
    # and when it is refunded again, the ledger's own refunds still count: 60.00 fits, one fen more not
    with pytest.raises(Exception) as refused:
        ledger.refund(paid.entry_id, 6_001, key="refund-2", operator="t")
    assert getattr(refused.value, "code", None) == "refund_exceeds_payment"
    ledger.refund(paid.entry_id, 6_000, key="refund-3", operator="t")
    assert ledger.get_balance(member_id).principal_fen == 10_000
    # and the guard, rebuilt from the ledger, agrees with it again
    assert_ledger_ok()


def test_a_guard_that_says_a_payment_took_more_is_named_and_not_believed(make_member):
    # given a debit of 10.00, refunded 1.00, whose guard is then raised to 100.00 by hand
    member_id = make_member(10_000)
    paid = ledger.debit(member_id, 1_000, key="pay", operator="t")
    ledger.refund(paid.entry_id, 100, key="refund-1", operator="t")
    db.session.execute(text("UPDATE payment_refundable SET taken_principal_fen = 10000"))
    db.session.commit()
    # then the checker names the guard
    problems = check_ledger()
    assert [p.invariant for p in problems] == ["refund guard out of step"]
    assert f"payment {paid.entry_id} took (1000, 0)" in problems[0].detail
    # and the service refunds no more than the payment took
    with pytest.raises(Exception) as refused:
        ledger.refund(paid.entry_id, 5_000, key="refund-2", operator="t")
    assert getattr(refused.value, "code", None) == "refund_exceeds_payment"


def test_sqlite_replace_cannot_rewrite_a_ledger_row(make_member):
    # given a credit
    member_id = make_member(2_000)
    if db.session.connection().dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite's: MariaDB's REPLACE fires the DELETE trigger")
    # when the app's own connection tries to replace it (SQLite fires no DELETE trigger for REPLACE
    # unless recursive triggers are on, which the app turns on)
    with pytest.raises(DBAPIError):
        db.session.execute(
            text(
                "REPLACE INTO ledger_entry SELECT id, member_id, kind, 2000000, principal_delta_fen, bonus_delta_fen,"
                " held_delta_fen, principal_after_fen, bonus_after_fen, held_after_fen, related_entry_id,"
                " closes_entry_id, store_id, operator, reference, idempotency_key, request_hash, note, created_at"
                " FROM ledger_entry WHERE member_id = :m"
            ),
            {"m": member_id},
        )
    db.session.rollback()
    # then the row is as it was
    assert db.session.execute(text("SELECT amount_fen FROM ledger_entry")).scalars().all() == [2_000]


def test_a_region_manager_cannot_reverse_a_credit_made_in_another_region_by_naming_a_store_of_theirs(org, make_member):
    # given a credit made at sh01 (east), and the manager of the north region
    from mp_backend.errors import Forbidden
    from mp_backend.members import service as members
    from mp_backend.org import service as org_service

    north = org_service.create_staff("north-m", "region_manager", "password-1", region_code="north").id
    member_id = make_member()
    credit = ledger.credit(member_id, 500, key="c", operator="t", store_id=org["stores"]["sh01"])
    # when the north manager reverses it, booking the reversal at bj01 (a north store)
    with pytest.raises(Forbidden) as refused:
        members.reverse_credit(credit.entry_id, key="rv", staff_id=north, reason="x", store_id=org["stores"]["bj01"])
    # then it is refused for the credit's store, and nothing was written
    assert refused.value.code == "store_out_of_scope"
    assert ledger.get_balance(member_id).principal_fen == 500
    # while the east manager may
    east = org["staff"]["east_manager"]
    members.reverse_credit(credit.entry_id, key="rv", staff_id=east, reason="x", store_id=org["stores"]["sh02"])
    assert ledger.get_balance(member_id).principal_fen == 0
    assert_ledger_ok()


@pytest.mark.parametrize("staff_id", [True, 1.0, "1", None, 2**63], ids=["bool", "float", "str", "none", "huge"])
def test_a_staff_id_that_is_not_an_id_is_nobody(org, make_member, staff_id):
    from mp_backend.errors import Forbidden
    from mp_backend.members import service as members

    member_id = make_member(1_000)
    with pytest.raises(Forbidden) as refused:
        members.withdraw_offline(member_id, 100, key="w", staff_id=staff_id, reason="x")  # type: ignore[arg-type]
    assert refused.value.code == "staff_not_found"
    assert ledger.get_balance(member_id).principal_fen == 1_000


@pytest.mark.parametrize("bad", ["k\x00", "   ", "a\nb"], ids=["nul", "blank", "newline"])
def test_keys_and_operators_are_one_line_of_text(make_member, bad):
    from mp_backend.errors import ValidationFailed

    member_id = make_member()
    with pytest.raises(ValidationFailed) as refused:
        ledger.credit(member_id, 100, key=bad, operator="t")
    assert refused.value.code == "invalid_idempotency_key"
    with pytest.raises(ValidationFailed) as refused:
        ledger.credit(member_id, 100, key="k", operator=bad)
    assert refused.value.code == "invalid_operator"
    with pytest.raises(ValidationFailed) as refused:
        ledger.set_frozen(member_id, "0")  # type: ignore[arg-type]
    assert refused.value.code == "invalid_frozen"
    assert ledger.get_balance(member_id).principal_fen == 0


def test_sqlite_replace_from_another_tool_cannot_rewrite_a_ledger_row(make_member, database_url):
    # given a credit, and a connection of another tool (no recursive triggers: the sqlite3 shell's default)
    import sqlite3

    make_member(2_000)
    if not database_url.startswith("sqlite:///"):
        pytest.skip("REPLACE is SQLite's: MariaDB's REPLACE fires the DELETE trigger")
    db.session.commit()
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
    try:
        assert other.execute("PRAGMA recursive_triggers").fetchone() == (0,)
        # when it replaces the row with the same id, or inserts another under the same idempotency key
        for statement in (
            "REPLACE INTO ledger_entry SELECT id, member_id, kind, 2000000, principal_delta_fen, bonus_delta_fen,"
            " held_delta_fen, principal_after_fen, bonus_after_fen, held_after_fen, related_entry_id,"
            " closes_entry_id, store_id, 'staff:someone-else', reference, idempotency_key, request_hash, note,"
            " created_at, split_principal_fen FROM ledger_entry",
            "INSERT OR REPLACE INTO ledger_entry (member_id, kind, amount_fen, principal_delta_fen, bonus_delta_fen,"
            " held_delta_fen, principal_after_fen, bonus_after_fen, held_after_fen, operator, idempotency_key,"
            " request_hash, note, created_at) SELECT member_id, kind, 1, 1, 0, 0, 1, 0, 0, 'x', idempotency_key,"
            " request_hash, '', created_at FROM ledger_entry",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                other.execute(statement)
            other.rollback()
    finally:
        other.close()
    # then the row is as it was
    rows = db.session.execute(text("SELECT amount_fen, operator FROM ledger_entry")).all()
    assert [tuple(r) for r in rows] == [(2_000, "test")]
