"""A hold that names its buckets (``ledger.hold(buckets=...)``): what a recharge refund uses to take back
exactly the principal and bonus its recharge gave, whatever the spending policy would have taken.

Expected splits are written out by hand. The wallet of 100.00 principal + 40.00 bonus gives, for a hold
of 50.00, 35.71 + 14.29 under the proportional policy: every named split below differs from it.
"""

from __future__ import annotations

import pytest

from mp_backend.errors import IdempotencyConflict, InsufficientBalance, MemberFrozen, ValidationFailed
from mp_backend.ledger import service as ledger
from tests.conftest import assert_ledger_ok, count_rows


def buckets(member_id: int) -> tuple[int, int, int]:
    balance = ledger.get_balance(member_id)
    return balance.principal_fen, balance.bonus_fen, balance.held_fen


@pytest.fixture
def member(make_member) -> int:  # type: ignore[no-untyped-def]
    return make_member(10_000, 4_000)


def test_named_hold_takes_exactly_the_named_buckets(member):
    # when 50.00 is held as 45.00 principal + 5.00 bonus (the policy would take 35.71 + 14.29)
    held = ledger.hold(member, 5_000, key="h1", operator="t", buckets={"principal": 4_500, "bonus": 500})
    # then exactly those buckets are taken and held
    assert (held.principal_delta_fen, held.bonus_delta_fen, held.held_delta_fen) == (-4_500, -500, 5_000)
    assert buckets(member) == (5_500, 3_500, 5_000)
    assert_ledger_ok()


def test_full_capture_and_void_of_a_named_hold_mirror_its_buckets(member):
    # given two named holds
    first = ledger.hold(member, 3_000, key="h1", operator="t", buckets={"principal": 3_000, "bonus": 0})
    second = ledger.hold(member, 2_000, key="h2", operator="t", buckets={"principal": 0, "bonus": 2_000})
    # when the first is captured in full and the second voided
    captured = ledger.capture(first.entry_id, key="c1", operator="t")
    ledger.void(second.entry_id, key="v2", operator="t")
    # then the capture took exactly the named principal and the void gave the named bonus back
    assert (captured.principal_delta_fen, captured.bonus_delta_fen, captured.held_delta_fen) == (0, 0, -3_000)
    assert buckets(member) == (7_000, 4_000, 0)
    assert_ledger_ok()


def test_partial_capture_of_a_named_hold_splits_within_its_buckets(member):
    # given a named hold of 45.00 principal + 5.00 bonus
    held = ledger.hold(member, 5_000, key="h1", operator="t", buckets={"principal": 4_500, "bonus": 500})
    # when 20.00 of it is captured (proportional within the hold: 18.00 + 2.00) and the rest released
    ledger.capture(held.entry_id, 2_000, key="c1", operator="t")
    # then
    assert buckets(member) == (10_000 - 1_800, 4_000 - 200, 0)
    assert_ledger_ok()


def test_a_missing_bucket_counts_as_zero(member):
    held = ledger.hold(member, 1_000, key="h1", operator="t", buckets={"bonus": 1_000})
    assert (held.principal_delta_fen, held.bonus_delta_fen) == (0, -1_000)
    assert_ledger_ok()


@pytest.mark.parametrize(
    "named",
    [
        {"principal": 4_000, "bonus": 500},  # adds up to 45.00, not 50.00
        {"principal": 5_500, "bonus": -500},  # a negative bucket
        {"principal": 4_500.0, "bonus": 500},  # not an int
        {"principal": True, "bonus": 4_999},  # a bool is not an amount
        {"principal": "4500", "bonus": 500},
        {"principal": 4_500, "bonus": 500, "held": 0},  # no such bucket
        {},
        [("principal", 4_500), ("bonus", 500)],  # not a mapping
    ],
    ids=["sum", "negative", "float", "bool", "text", "unknown-bucket", "empty", "list"],
)
def test_bad_named_buckets_are_refused_and_nothing_changes(member, named):
    rows = count_rows("ledger_entry")
    with pytest.raises(ValidationFailed) as refused:
        ledger.hold(member, 5_000, key="h1", operator="t", buckets=named)
    assert refused.value.code == "invalid_buckets"
    assert count_rows("ledger_entry") == rows and buckets(member) == (10_000, 4_000, 0)
    assert_ledger_ok()


@pytest.mark.parametrize(
    "named", [{"principal": 10_001, "bonus": 0}, {"principal": 0, "bonus": 4_001}, {"principal": 9_000, "bonus": 4_500}]
)
def test_a_bucket_the_wallet_does_not_have_is_refused(member, named):
    # (the last one fits the available 140.00 in total, but not bonus by bonus)
    with pytest.raises(InsufficientBalance) as refused:
        ledger.hold(member, sum(named.values()), key="h1", operator="t", buckets=named)
    assert refused.value.code == "insufficient_balance"
    assert refused.value.details == {"principal_fen": 10_000, "bonus_fen": 4_000}
    assert buckets(member) == (10_000, 4_000, 0) and count_rows("ledger_entry") == 2
    assert_ledger_ok()


def test_retry_replays_and_another_split_under_the_same_key_conflicts(member):
    named = {"principal": 4_500, "bonus": 500}
    first = ledger.hold(member, 5_000, key="h1", operator="t", buckets=named)
    again = ledger.hold(member, 5_000, key="h1", operator="t", buckets=dict(named))
    assert again.replayed and again.entry_id == first.entry_id
    with pytest.raises(IdempotencyConflict):
        ledger.hold(member, 5_000, key="h1", operator="t", buckets={"principal": 4_000, "bonus": 1_000})
    with pytest.raises(IdempotencyConflict):  # the same key without naming buckets is another request too
        ledger.hold(member, 5_000, key="h1", operator="t")
    assert buckets(member) == (5_500, 3_500, 5_000)
    assert_ledger_ok()


def test_a_frozen_wallet_cannot_hold_named_buckets(member):
    ledger.set_frozen(member, True)
    from mp_backend.extensions import db

    db.session.commit()
    with pytest.raises(MemberFrozen):
        ledger.hold(member, 1_000, key="h1", operator="t", buckets={"principal": 1_000, "bonus": 0})
    assert_ledger_ok()


def test_an_ordinary_hold_records_no_named_split(member):
    from sqlalchemy import text

    from mp_backend.extensions import db

    held = ledger.hold(member, 5_000, key="h1", operator="t")
    named = db.session.execute(
        text("SELECT split_principal_fen FROM ledger_entry WHERE id = :id"), {"id": held.entry_id}
    ).scalar_one()
    assert named is None
    assert (held.principal_delta_fen, held.bonus_delta_fen) == (-3_571, -1_429)
    assert_ledger_ok()
