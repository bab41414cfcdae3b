"""Every ledger operation through the service, one behaviour per test, invariants checked at the end.

Amounts are chosen so that each spending policy gives a different split, and expected splits are
written out by hand (not computed with the code under test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from sqlalchemy import select

from mp_backend.errors import Conflict, IdempotencyConflict, InsufficientBalance, MemberFrozen
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.members import service as members
from mp_backend.org import service as org_service
from mp_backend.org.models import AuditLog
from tests.conftest import assert_ledger_ok, count_rows

entry_t = LedgerEntry.__table__


# Just the stores and one HQ admin, for tests that need no other role (conftest's ``org`` has them all).
@pytest.fixture
def stores(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    org_service.ensure_merchant("测试商户")
    org_service.ensure_region("east", "华东区")
    return {code: org_service.ensure_store(code, code, "east").id for code in ("sh01", "sh02")}


@pytest.fixture
def admin_id(stores) -> int:  # type: ignore[no-untyped-def]
    return org_service.create_staff("admin", "hq_admin", "password-1").id


def entry(entry_id: int):  # type: ignore[no-untyped-def]
    return db.session.execute(select(entry_t).where(entry_t.c.id == entry_id)).one()._mapping


def buckets(member_id: int) -> tuple[int, int, int]:
    balance = ledger.get_balance(member_id)
    return balance.principal_fen, balance.bonus_fen, balance.held_fen


def audit_rows(action: str) -> list[AuditLog]:
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


# ---------------------------------------------------------------------------------------------------
# Credits


def test_credit_principal_adds_to_principal_only(make_member):
    # given a member with an empty wallet
    member_id = make_member()
    # when 120.30 of paid-in money is credited
    posting = ledger.credit(member_id, 12_030, key="credit-p", operator="test")
    # then it lands in principal, and the row says so
    assert buckets(member_id) == (12_030, 0, 0)
    assert (posting.kind, posting.amount_fen) == ("credit", 12_030)
    assert (posting.principal_delta_fen, posting.bonus_delta_fen, posting.held_delta_fen) == (12_030, 0, 0)
    assert not posting.replayed
    row = entry(posting.entry_id)
    assert (row["principal_after_fen"], row["bonus_after_fen"], row["held_after_fen"]) == (12_030, 0, 0)
    assert row["idempotency_key"] == "credit-p"
    assert_ledger_ok()


def test_credit_bonus_adds_to_bonus_only(make_member):
    # given a member with 50.00 principal
    member_id = make_member(5_000)
    # when 8.00 of gift money is credited
    posting = ledger.credit(member_id, 800, bucket="bonus", key="credit-b", operator="test")
    # then principal is untouched
    assert buckets(member_id) == (5_000, 800, 0)
    assert (posting.principal_delta_fen, posting.bonus_delta_fen) == (0, 800)
    assert posting.balance == ledger.Balance(5_000, 800, 0)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Debits under each spending policy


@pytest.mark.parametrize(
    ("policy", "principal", "bonus", "amount", "expected_taken"),
    [
        # proportional: bonus share = amount * bonus / (principal + bonus) to the nearest fen, halves up
        ("proportional", 10_000, 1_000, 5_500, (5_000, 500)),
        ("proportional", 2, 1, 2, (1, 1)),  # 2 * 1 / 3 = 0.67 -> 1 from bonus
        ("proportional", 3, 1, 2, (1, 1)),  # 2 * 1 / 4 = 0.5: halves go up
        ("proportional", 10_000, 1_000, 9, (8, 1)),  # 0.82: small payments take bonus too
        ("proportional", 1, 2, 2, (1, 1)),  # 2 * 2 / 3 = 1.33 -> 1 from bonus
        ("proportional", 700, 300, 1_000, (700, 300)),  # everything
        ("proportional", 0, 500, 200, (0, 200)),
        ("principal_first", 1_000, 500, 800, (800, 0)),
        ("principal_first", 1_000, 500, 1_200, (1_000, 200)),
        ("principal_first", 0, 500, 200, (0, 200)),
        ("bonus_first", 1_000, 500, 300, (0, 300)),
        ("bonus_first", 1_000, 500, 1_200, (700, 500)),
        ("bonus_first", 1_000, 0, 300, (300, 0)),
    ],
)
def test_debit_splits_by_the_spending_policy(app, make_member, policy, principal, bonus, amount, expected_taken):
    # given a member with both buckets and the merchant's policy
    app.config["SPENDING_POLICY"] = policy
    member_id = make_member(principal, bonus)
    # when they pay
    posting = ledger.debit(member_id, amount, key="pay-1", operator="till")
    # then each bucket gives what the policy says, and nothing is held
    taken_principal, taken_bonus = expected_taken
    assert (posting.principal_delta_fen, posting.bonus_delta_fen, posting.held_delta_fen) == (
        -taken_principal,
        -taken_bonus,
        0,
    )
    assert buckets(member_id) == (principal - taken_principal, bonus - taken_bonus, 0)
    assert posting.balance == ledger.get_balance(member_id)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Holds: hold -> capture (full or partial) or void


@pytest.mark.parametrize(
    ("policy", "expected_hold_taken"),
    [("proportional", (800, 400)), ("principal_first", (1_000, 200)), ("bonus_first", (700, 500))],
)
def test_hold_moves_money_from_the_buckets_to_held(app, make_member, policy, expected_hold_taken):
    # given 10.00 principal, 5.00 bonus
    app.config["SPENDING_POLICY"] = policy
    member_id = make_member(1_000, 500)
    # when 12.00 is held
    held = ledger.hold(member_id, 1_200, key="hold-1", operator="till")
    # then it is taken by the policy and shows as held, not spendable
    hp, hb = expected_hold_taken
    assert (held.principal_delta_fen, held.bonus_delta_fen, held.held_delta_fen) == (-hp, -hb, 1_200)
    assert buckets(member_id) == (1_000 - hp, 500 - hb, 1_200)
    assert ledger.get_balance(member_id).available_fen == 300
    assert_ledger_ok()


def test_capture_in_full_keeps_everything_the_hold_took(make_member):
    # given a hold of 12.00
    member_id = make_member(1_000, 500)
    held = ledger.hold(member_id, 1_200, key="hold-1", operator="till")
    after_hold = buckets(member_id)
    # when it is captured without an amount
    captured = ledger.capture(held.entry_id, key="cap-1", operator="till")
    # then held goes to zero, the buckets keep what the hold took, and the hold is closed
    assert captured.amount_fen == 1_200
    assert (captured.principal_delta_fen, captured.bonus_delta_fen, captured.held_delta_fen) == (0, 0, -1_200)
    assert buckets(member_id) == (after_hold[0], after_hold[1], 0)
    row = entry(captured.entry_id)
    assert row["kind"] == "capture"
    assert row["related_entry_id"] == held.entry_id
    assert row["closes_entry_id"] == held.entry_id
    assert_ledger_ok()


@pytest.mark.parametrize(
    # member 10.00 principal + 5.00 bonus; hold 12.00; capture 9.00
    ("policy", "hold_taken", "capture_taken"),
    [
        # hold took (800, 400); capture takes 900 * 400 // 1200 = 300 bonus, 600 principal
        ("proportional", (800, 400), (600, 300)),
        # hold took (1000, 200); capture takes principal first: (900, 0); 100 principal + 200 bonus go back
        ("principal_first", (1_000, 200), (900, 0)),
        # hold took (700, 500); capture takes bonus first: (400, 500); 300 principal goes back
        ("bonus_first", (700, 500), (400, 500)),
    ],
)
def test_partial_capture_returns_the_rest_to_the_buckets_it_came_from(
    app, make_member, policy, hold_taken, capture_taken
):
    # given a hold of 12.00 on 10.00 principal + 5.00 bonus
    app.config["SPENDING_POLICY"] = policy
    member_id = make_member(1_000, 500)
    held = ledger.hold(member_id, 1_200, key="hold-1", operator="till")
    assert (-held.principal_delta_fen, -held.bonus_delta_fen) == hold_taken
    # when only 9.00 of it is captured
    captured = ledger.capture(held.entry_id, 900, key="cap-1", operator="till")
    # then the buckets lose exactly what the capture took, no bucket gets back more than the hold took
    cp, cb = capture_taken
    assert buckets(member_id) == (1_000 - cp, 500 - cb, 0)
    assert 0 <= captured.principal_delta_fen <= hold_taken[0]
    assert 0 <= captured.bonus_delta_fen <= hold_taken[1]
    assert captured.principal_delta_fen + captured.bonus_delta_fen == 300
    assert captured.held_delta_fen == -1_200
    assert captured.amount_fen == 900
    assert_ledger_ok()


def test_void_gives_the_hold_back_exactly(app, make_member):
    # given a bonus-first hold that took from both buckets
    app.config["SPENDING_POLICY"] = "bonus_first"
    member_id = make_member(1_000, 500)
    held = ledger.hold(member_id, 1_200, key="hold-1", operator="till")
    # when it is voided
    voided = ledger.void(held.entry_id, key="void-1", operator="till")
    # then the wallet is what it was before the hold, and the hold is closed
    assert buckets(member_id) == (1_000, 500, 0)
    assert (voided.principal_delta_fen, voided.bonus_delta_fen, voided.held_delta_fen) == (700, 500, -1_200)
    assert voided.amount_fen == 1_200
    assert entry(voided.entry_id)["closes_entry_id"] == held.entry_id
    assert_ledger_ok()


def test_capture_uses_the_hold_even_if_the_balance_was_spent_meanwhile(make_member):
    # given a hold, after which the rest of the balance is spent
    member_id = make_member(1_000)
    held = ledger.hold(member_id, 600, key="hold-1", operator="till")
    ledger.debit(member_id, 400, key="pay-1", operator="till")
    # when the hold is captured in part
    ledger.capture(held.entry_id, 250, key="cap-1", operator="till")
    # then the uncaptured 3.50 comes back, nothing else changed
    assert buckets(member_id) == (350, 0, 0)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Refunds


def test_full_refund_of_a_debit_restores_the_wallet(make_member):
    # given a proportional payment of 10.00 from 7.00 principal + 3.00 bonus... of a bigger wallet
    member_id = make_member(7_000, 3_000)
    paid = ledger.debit(member_id, 1_000, key="pay-1", operator="till")
    assert (paid.principal_delta_fen, paid.bonus_delta_fen) == (-700, -300)
    # when it is refunded in full
    refunded = ledger.refund(paid.entry_id, 1_000, key="refund-1", operator="till")
    # then each bucket gets back what it gave
    assert (refunded.principal_delta_fen, refunded.bonus_delta_fen, refunded.held_delta_fen) == (700, 300, 0)
    assert buckets(member_id) == (7_000, 3_000, 0)
    assert entry(refunded.entry_id)["related_entry_id"] == paid.entry_id
    assert_ledger_ok()


def test_refund_of_a_capture_gives_back_what_the_capture_took(app, make_member):
    # given a principal-first hold of 12.00 on 10.00 + 5.00, captured at 9.00: took (900, 0)
    app.config["SPENDING_POLICY"] = "principal_first"
    member_id = make_member(1_000, 500)
    held = ledger.hold(member_id, 1_200, key="hold-1", operator="till")
    captured = ledger.capture(held.entry_id, 900, key="cap-1", operator="till")
    assert buckets(member_id) == (100, 500, 0)
    # when the capture is refunded in full
    refunded = ledger.refund(captured.entry_id, 900, key="refund-1", operator="till")
    # then principal gets its 9.00 back, bonus nothing (it gave nothing to the capture)
    assert (refunded.principal_delta_fen, refunded.bonus_delta_fen) == (900, 0)
    assert buckets(member_id) == (1_000, 500, 0)
    assert_ledger_ok()


def test_partial_refunds_until_fully_refunded_then_nothing_more(make_member):
    # given a payment that took (700, 300)
    member_id = make_member(7_000, 3_000)
    paid = ledger.debit(member_id, 1_000, key="pay-1", operator="till")
    # when it is refunded 3.00, 3.00 and 4.00
    first = ledger.refund(paid.entry_id, 300, key="refund-1", operator="till")
    second = ledger.refund(paid.entry_id, 300, key="refund-2", operator="till")
    third = ledger.refund(paid.entry_id, 400, key="refund-3", operator="till")
    # then each refund gave back principal and bonus in the payment's proportion (7:3), the last one the
    # exact remainder, and the wallet is whole again
    assert [(r.principal_delta_fen, r.bonus_delta_fen) for r in (first, second, third)] == [
        (210, 90),
        (210, 90),
        (280, 120),
    ]
    assert buckets(member_id) == (7_000, 3_000, 0)
    # and not one more fen can be refunded
    rows = count_rows("ledger_entry")
    with pytest.raises(Conflict) as refused:
        ledger.refund(paid.entry_id, 1, key="refund-4", operator="till")
    assert refused.value.code == "refund_exceeds_payment"
    assert count_rows("ledger_entry") == rows
    assert_ledger_ok()


def test_partial_refund_never_turns_gift_money_into_principal(make_member):
    # given 100.00 principal and 100.00 bonus, all of it spent
    member_id = make_member(10_000, 10_000)
    paid = ledger.debit(member_id, 20_000, key="pay-1", operator="till")
    # when half of the payment is refunded
    ledger.refund(paid.entry_id, 10_000, key="refund-1", operator="till")
    # then half of each bucket comes back: 50.00 of principal, not 100.00 that a withdrawal could pay out
    assert buckets(member_id) == (5_000, 5_000, 0)
    assert_ledger_ok()


def test_refunds_in_uneven_steps_round_on_the_running_total(make_member):
    # given a payment that took (2, 1): a third of it from bonus
    member_id = make_member(2, 1)
    paid = ledger.debit(member_id, 3, key="pay-1", operator="till")
    # when it is refunded one fen at a time
    steps = [ledger.refund(paid.entry_id, 1, key=f"refund-{n}", operator="till") for n in range(3)]
    # then the bonus comes back when the running total's share reaches half a fen, and no fen drifts
    assert [(r.principal_delta_fen, r.bonus_delta_fen) for r in steps] == [(1, 0), (0, 1), (1, 0)]
    assert buckets(member_id) == (2, 1, 0)
    assert_ledger_ok()


def test_small_payments_take_bonus_too(make_member):
    # given 1,000.00 principal and 100.00 bonus (one eleventh of the wallet)
    member_id = make_member(100_000, 10_000)
    # when it pays 9 fen a hundred times
    for n in range(100):
        ledger.debit(member_id, 9, key=f"pay-{n}", operator="till")
    # then the bonus was used at about the wallet's pace (one payment of 9.00 takes 818 of 9,000),
    # not never, as rounding down would have it
    principal, bonus, _held = buckets(member_id)
    assert 10_000 - bonus == 100  # each 9-fen payment's share is 0.82 fen: 1 fen, to the nearest
    assert principal + bonus == 110_000 - 900
    assert_ledger_ok()


def test_refund_is_pro_rata_but_never_more_than_each_bucket_gave(app, make_member):
    # given a bonus-first payment that took 2.00 principal and 5.00 bonus
    app.config["SPENDING_POLICY"] = "bonus_first"
    member_id = make_member(1_000, 500)
    paid = ledger.debit(member_id, 700, key="pay-1", operator="till")
    assert (paid.principal_delta_fen, paid.bonus_delta_fen) == (-200, -500)
    # when 3.00 is refunded: 2/7 of it to principal, 5/7 to bonus (214.3 -> 214)
    refunded = ledger.refund(paid.entry_id, 300, key="refund-1", operator="till")
    assert (refunded.principal_delta_fen, refunded.bonus_delta_fen) == (86, 214)
    # and the rest comes back as the exact remainder of each bucket
    again = ledger.refund(paid.entry_id, 400, key="refund-2", operator="till")
    assert (again.principal_delta_fen, again.bonus_delta_fen) == (114, 286)
    assert buckets(member_id) == (1_000, 500, 0)
    assert_ledger_ok()


def test_refund_of_a_bonus_only_payment_never_goes_to_principal(app, make_member):
    # given a payment paid entirely from bonus
    app.config["SPENDING_POLICY"] = "bonus_first"
    member_id = make_member(1_000, 500)
    paid = ledger.debit(member_id, 400, key="pay-1", operator="till")
    # when it is refunded in full
    refunded = ledger.refund(paid.entry_id, 400, key="refund-1", operator="till")
    # then gift money comes back as gift money, not as withdrawable principal
    assert (refunded.principal_delta_fen, refunded.bonus_delta_fen) == (0, 400)
    assert buckets(member_id) == (1_000, 500, 0)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Offline withdrawal and reversal


@pytest.mark.parametrize(
    ("who", "store"), [("admin", None), ("admin", "sh02"), ("east_manager", "sh02"), ("sh01_manager", "sh01")]
)
def test_offline_withdrawal_takes_principal_and_writes_an_audit_row(org, make_member, who, store):
    # given a member with principal and bonus, and a staff member allowed to record withdrawals
    member_id = make_member(5_000, 2_000)
    staff_id = org["staff"][who]
    store_id = org["stores"][store] if store else None
    # when 30.00 handed back in cash is recorded
    posting = members.withdraw_offline(
        member_id, 3_000, key="wd-1", staff_id=staff_id, reason="  顾客退卡  ", store_id=store_id
    )
    # then only principal is reduced, and the row and an audit entry say who and why
    assert buckets(member_id) == (2_000, 2_000, 0)
    assert (posting.kind, posting.principal_delta_fen, posting.bonus_delta_fen) == ("withdrawal", -3_000, 0)
    row = entry(posting.entry_id)
    assert row["operator"] == f"staff:{staff_id}"
    assert row["store_id"] == store_id
    assert row["note"] == "顾客退卡"
    [audit] = audit_rows("withdraw_offline")
    assert audit.staff_id == staff_id
    assert audit.subject == f"member:{member_id}"
    assert "3000" in audit.reason and "顾客退卡" in audit.reason
    assert_ledger_ok()


def test_offline_withdrawal_of_all_principal_leaves_bonus(admin_id, make_member):
    # given 50.00 principal and 20.00 bonus
    member_id = make_member(5_000, 2_000)
    # when all the principal is withdrawn
    members.withdraw_offline(member_id, 5_000, key="wd-1", staff_id=admin_id, reason="退卡")
    # then the bonus stays (it is never paid out)
    assert buckets(member_id) == (0, 2_000, 0)
    assert_ledger_ok()


def test_reversal_of_a_credit_takes_it_back_once(admin_id, make_member):
    # given a credit of 100.00 entered by mistake
    member_id = make_member(1_000)
    mistake = ledger.credit(member_id, 10_000, key="credit-typo", operator="till")
    admin = admin_id
    # when it is reversed
    reversal = members.reverse_credit(mistake.entry_id, key="rev-1", staff_id=admin, reason="金额输错")
    # then the wallet is as before the credit, the reversal closes the credit, and it is audited
    assert buckets(member_id) == (1_000, 0, 0)
    assert (reversal.kind, reversal.amount_fen, reversal.principal_delta_fen) == ("reversal", 10_000, -10_000)
    row = entry(reversal.entry_id)
    assert row["closes_entry_id"] == mistake.entry_id == row["related_entry_id"]
    assert row["operator"] == f"staff:{admin}"
    [audit] = audit_rows("reverse_entry")
    assert (audit.staff_id, audit.subject, audit.reason) == (admin, f"entry:{mistake.entry_id}", "金额输错")
    # and a second reversal with a new key is refused
    rows = count_rows("ledger_entry")
    with pytest.raises(Conflict) as refused:
        members.reverse_credit(mistake.entry_id, key="rev-2", staff_id=admin, reason="again")
    assert refused.value.code == "already_reversed"
    assert count_rows("ledger_entry") == rows
    assert buckets(member_id) == (1_000, 0, 0)
    assert_ledger_ok()


def test_reversal_of_a_bonus_credit(org, make_member):
    # given a gift credited by mistake at sh01
    member_id = make_member(1_000)
    gift = ledger.credit(member_id, 500, bucket="bonus", key="gift", operator="till", store_id=org["stores"]["sh01"])
    # when it is reversed
    reversal = members.reverse_credit(
        gift.entry_id,
        key="rev-1",
        staff_id=org["staff"]["east_manager"],
        reason="重复赠送",
        store_id=org["stores"]["sh01"],
    )
    # then it leaves bonus only
    assert (reversal.principal_delta_fen, reversal.bonus_delta_fen) == (0, -500)
    assert buckets(member_id) == (1_000, 0, 0)
    assert_ledger_ok()


@pytest.mark.parametrize("target", ["debit", "hold", "refund", "withdrawal", "reversal"])
def test_only_credits_can_be_reversed(admin_id, make_member, target):
    # given an entry of another kind
    member_id = make_member(5_000)
    admin = admin_id
    entries = {"debit": ledger.debit(member_id, 100, key="d", operator="t")}
    entries["hold"] = ledger.hold(member_id, 100, key="h", operator="t")
    entries["refund"] = ledger.refund(entries["debit"].entry_id, 50, key="r", operator="t")
    entries["withdrawal"] = members.withdraw_offline(member_id, 100, key="w", staff_id=admin, reason="x")
    credit = ledger.credit(member_id, 100, key="c", operator="t")
    entries["reversal"] = members.reverse_credit(credit.entry_id, key="rv", staff_id=admin, reason="x")
    rows, before = count_rows("ledger_entry"), buckets(member_id)
    # when it is reversed
    with pytest.raises(Conflict) as refused:
        members.reverse_credit(entries[target].entry_id, key="rev-other", staff_id=admin, reason="try")
    # then it is refused and nothing changes
    assert refused.value.code == "entry_not_reversible"
    assert (count_rows("ledger_entry"), buckets(member_id)) == (rows, before)
    assert_ledger_ok()


def test_reversal_refused_once_the_money_is_spent(admin_id, make_member):
    # given a credit of which part is spent (the wallet holds nothing else)
    member_id = make_member()
    credit = ledger.credit(member_id, 1_000, key="c", operator="t")
    ledger.debit(member_id, 1, key="d", operator="t")
    rows = count_rows("ledger_entry")
    # when it is reversed
    with pytest.raises(InsufficientBalance) as refused:
        members.reverse_credit(credit.entry_id, key="rev-1", staff_id=admin_id, reason="typo")
    # then it is refused: reversing would make principal negative
    assert refused.value.code == "insufficient_balance"
    assert count_rows("ledger_entry") == rows
    assert buckets(member_id) == (999, 0, 0)
    assert audit_rows("reverse_entry") == []
    assert_ledger_ok()


def test_reversal_refused_while_the_money_is_held(admin_id, make_member):
    # given a credit whose money is frozen by an open hold
    member_id = make_member()
    credit = ledger.credit(member_id, 1_000, key="c", operator="t")
    ledger.hold(member_id, 1_000, key="h", operator="t")
    # when it is reversed
    with pytest.raises(InsufficientBalance) as refused:
        members.reverse_credit(credit.entry_id, key="rev-1", staff_id=admin_id, reason="typo")
    # then it is refused
    assert refused.value.code == "insufficient_balance"
    assert buckets(member_id) == (0, 0, 1_000)
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Store, operator and reference on every row


def test_store_operator_and_reference_are_recorded_on_every_entry(stores, admin_id, make_member):
    # given a member and a store
    member_id = make_member()
    store = stores["sh01"]
    admin = admin_id
    first_id = ledger.credit(
        member_id, 10_000, key="c1", operator="till:7", store_id=store, reference="O-1", note="recharge"
    ).entry_id
    # when every kind of operation is done at that store
    ledger.credit(member_id, 1_000, bucket="bonus", key="c2", operator="till:7", store_id=store, reference="O-2")
    paid = ledger.debit(member_id, 1_000, key="d1", operator="till:7", store_id=store, reference="O-3")
    hold_a = ledger.hold(member_id, 500, key="h1", operator="till:7", store_id=store, reference="O-4")
    hold_b = ledger.hold(member_id, 500, key="h2", operator="till:7", store_id=store, reference="O-5")
    captured = ledger.capture(hold_a.entry_id, 300, key="cap", operator="till:7", store_id=store, reference="O-6")
    ledger.void(hold_b.entry_id, key="void", operator="till:7", store_id=store, reference="O-7")
    ledger.refund(paid.entry_id, 100, key="r1", operator="till:7", store_id=store, reference="O-8")
    ledger.refund(captured.entry_id, 100, key="r2", operator="till:7", store_id=store, reference="O-9")
    members.withdraw_offline(member_id, 100, key="w", staff_id=admin, reason="x", store_id=store, reference="O-10")
    mistake = ledger.credit(member_id, 5, key="c3", operator="till:7", store_id=store, reference="O-11")
    members.reverse_credit(mistake.entry_id, key="rv", staff_id=admin, reason="x", store_id=store)
    # then every row carries the store and who did it
    rows = db.session.execute(
        select(entry_t.c.kind, entry_t.c.store_id, entry_t.c.operator, entry_t.c.reference)
        .where(entry_t.c.id >= first_id)
        .order_by(entry_t.c.id)
    ).all()
    assert [r.kind for r in rows] == [
        "credit",
        "credit",
        "debit",
        "hold",
        "hold",
        "capture",
        "void",
        "refund",
        "refund",
        "withdrawal",
        "credit",
        "reversal",
    ]
    assert {r.store_id for r in rows} == {store}
    assert [r.operator for r in rows] == ["till:7"] * 9 + [f"staff:{admin}", "till:7", f"staff:{admin}"]
    assert [r.reference for r in rows] == [f"O-{n}" for n in range(1, 12)] + [None]
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Idempotency


def _scenario(kind: str, admin: int, make_member) -> tuple[int, Callable[[], ledger.Posting]]:  # type: ignore[no-untyped-def]
    """A member and a request of ``kind`` with a fixed key, ready to be sent (and sent again)."""
    member_id = make_member(5_000, 1_000)
    if kind == "credit":
        return member_id, lambda: ledger.credit(member_id, 700, key="K", operator="till")
    if kind == "credit_bonus":
        return member_id, lambda: ledger.credit(member_id, 700, bucket="bonus", key="K", operator="till")
    if kind == "debit":
        return member_id, lambda: ledger.debit(member_id, 700, key="K", operator="till", reference="order-1")
    if kind == "hold":
        return member_id, lambda: ledger.hold(member_id, 700, key="K", operator="till")
    if kind in ("capture_full", "capture_part", "void"):
        hold_id = ledger.hold(member_id, 700, key="setup-hold", operator="till").entry_id
        if kind == "void":
            return member_id, lambda: ledger.void(hold_id, key="K", operator="till")
        amount = None if kind == "capture_full" else 300
        return member_id, lambda: ledger.capture(hold_id, amount, key="K", operator="till")
    if kind == "refund":
        paid_id = ledger.debit(member_id, 700, key="setup-debit", operator="till").entry_id
        return member_id, lambda: ledger.refund(paid_id, 200, key="K", operator="till")
    if kind == "withdrawal":
        return member_id, lambda: members.withdraw_offline(member_id, 700, key="K", staff_id=admin, reason="退卡")
    if kind == "reversal":
        credit_id = ledger.credit(member_id, 700, key="setup-credit", operator="till").entry_id
        return member_id, lambda: members.reverse_credit(credit_id, key="K", staff_id=admin, reason="输错")
    raise AssertionError(kind)


KINDS = [
    "credit",
    "credit_bonus",
    "debit",
    "hold",
    "capture_full",
    "capture_part",
    "void",
    "refund",
    "withdrawal",
    "reversal",
]


@pytest.mark.parametrize("kind", KINDS)
def test_same_key_same_request_is_replayed_not_repeated(admin_id, make_member, kind):
    # given a request that took effect
    member_id, send = _scenario(kind, admin_id, make_member)
    first = send()
    rows, audits, balance = count_rows("ledger_entry"), count_rows("audit_log"), ledger.get_balance(member_id)
    # when it is sent again with the same key
    again = send()
    # then the first result comes back, marked as a replay, and nothing else happens
    assert not first.replayed
    assert again.replayed
    assert again == dataclasses.replace(first, replayed=True)
    assert count_rows("ledger_entry") == rows
    assert count_rows("audit_log") == audits
    assert ledger.get_balance(member_id) == balance
    assert_ledger_ok()


def test_retried_debit_is_replayed_even_if_it_no_longer_fits_the_balance(make_member):
    # given a debit of 8.00 out of 10.00
    member_id = make_member(1_000)
    first = ledger.debit(member_id, 800, key="pay-1", operator="till")
    rows = count_rows("ledger_entry")
    # when the till, having lost the answer, retries it (only 2.00 left)
    again = ledger.debit(member_id, 800, key="pay-1", operator="till")
    # then it gets the original success, not insufficient_balance, and nothing is taken twice
    assert again.replayed and again.entry_id == first.entry_id
    assert again.balance == ledger.Balance(200, 0, 0)
    assert count_rows("ledger_entry") == rows
    assert buckets(member_id) == (200, 0, 0)
    assert_ledger_ok()


def test_retried_capture_is_replayed_after_the_hold_is_settled(make_member):
    # given a captured hold
    member_id = make_member(1_000)
    held = ledger.hold(member_id, 600, key="h", operator="till")
    first = ledger.capture(held.entry_id, 400, key="cap", operator="till")
    # when the capture is retried (the hold is closed by now)
    again = ledger.capture(held.entry_id, 400, key="cap", operator="till")
    # then it is a replay, not hold_already_settled
    assert again.replayed and again.entry_id == first.entry_id
    assert buckets(member_id) == (600, 0, 0)
    assert_ledger_ok()


def test_retry_with_a_reworded_note_is_still_a_replay(make_member):
    # given a credit with a note
    member_id = make_member()
    first = ledger.credit(member_id, 500, key="c", operator="till", note="充值")
    # when it is retried with a different note (notes are for people, not part of the request)
    again = ledger.credit(member_id, 500, key="c", operator="till", note="充值（重试）")
    # then it is a replay
    assert again.replayed and again.entry_id == first.entry_id
    assert buckets(member_id) == (500, 0, 0)
    assert_ledger_ok()


def _first_and_conflicting(case: str, stores: dict, member_a: int, member_b: int):  # type: ignore[no-untyped-def]
    sh01, sh02 = stores["sh01"], stores["sh02"]

    def first() -> ledger.Posting:
        return ledger.debit(member_a, 300, key="K", operator="till", store_id=sh01, reference="order-1")

    other: dict[str, Callable[[], ledger.Posting]] = {
        "other amount": lambda: ledger.debit(
            member_a, 400, key="K", operator="till", store_id=sh01, reference="order-1"
        ),
        "other member": lambda: ledger.debit(
            member_b, 300, key="K", operator="till", store_id=sh01, reference="order-1"
        ),
        "unknown member": lambda: ledger.debit(
            10**9, 300, key="K", operator="till", store_id=sh01, reference="order-1"
        ),
        "other kind": lambda: ledger.hold(member_a, 300, key="K", operator="till", store_id=sh01, reference="order-1"),
        "credit": lambda: ledger.credit(member_a, 300, key="K", operator="till", store_id=sh01, reference="order-1"),
        "other store": lambda: ledger.debit(
            member_a, 300, key="K", operator="till", store_id=sh02, reference="order-1"
        ),
        "other operator": lambda: ledger.debit(
            member_a, 300, key="K", operator="till-2", store_id=sh01, reference="order-1"
        ),
        "other reference": lambda: ledger.debit(
            member_a, 300, key="K", operator="till", store_id=sh01, reference="order-2"
        ),
        "amount too big now": lambda: ledger.debit(
            member_a, 4_900, key="K", operator="till", store_id=sh01, reference="order-1"
        ),
    }
    return first, other[case]


@pytest.mark.parametrize(
    "case",
    [
        "other amount",
        "other member",
        "unknown member",
        "other kind",
        "credit",
        "other store",
        "other operator",
        "other reference",
        "amount too big now",
    ],
)
def test_same_key_different_request_is_refused_and_changes_nothing(stores, make_member, case):
    # given a debit that took effect under key K, and a second member
    member_a, member_b = make_member(5_000), make_member(5_000)
    first, conflicting = _first_and_conflicting(case, stores, member_a, member_b)
    original = first()
    rows = count_rows("ledger_entry")
    balances = (ledger.get_balance(member_a), ledger.get_balance(member_b))
    # when a different request arrives with the same key
    with pytest.raises(IdempotencyConflict) as refused:
        conflicting()
    # then it is refused as a conflict, and nothing changes
    assert refused.value.code == "idempotency_conflict"
    assert refused.value.status == 409
    assert count_rows("ledger_entry") == rows
    assert (ledger.get_balance(member_a), ledger.get_balance(member_b)) == balances
    assert ledger.find_entry(original.entry_id) == original
    assert_ledger_ok()


@pytest.mark.parametrize(
    ("first_key", "second_key"),
    [("req-AbC", "req-abc"), ("req-1", "req-1 ")],
    ids=["differ in case", "differ by a trailing space"],
)
def test_keys_are_compared_exactly(make_member, first_key, second_key):
    # given a recharge under a client's request id
    member_id = make_member()
    first = ledger.credit(member_id, 500, key=first_key, operator="till")
    # when another recharge of the same amount arrives under an id that is not the same string
    second = ledger.credit(member_id, 500, key=second_key, operator="till")
    # then it is a different request and is credited too (a "replay" here would lose paid-in money)
    assert not second.replayed
    assert second.entry_id != first.entry_id
    assert buckets(member_id) == (1_000, 0, 0)
    assert count_rows("ledger_entry") == 2
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Frozen and lost cards


def _set_status(admin: int, member_id: int, status: str) -> None:
    members.set_status(member_id, status, staff_id=admin, reason="test")


@pytest.mark.parametrize("status", ["frozen", "lost"])
@pytest.mark.parametrize("operation", ["credit", "credit_bonus", "debit", "hold"])
def test_frozen_or_lost_card_cannot_be_credited_or_spent(admin_id, make_member, status, operation):
    # given a member with money whose card is frozen or reported lost
    member_id = make_member(5_000, 1_000)
    _set_status(admin_id, member_id, status)
    rows, balance = count_rows("ledger_entry"), ledger.get_balance(member_id)
    call = {
        "credit": lambda: ledger.credit(member_id, 100, key="x", operator="till"),
        "credit_bonus": lambda: ledger.credit(member_id, 100, bucket="bonus", key="x", operator="till"),
        "debit": lambda: ledger.debit(member_id, 100, key="x", operator="till"),
        "hold": lambda: ledger.hold(member_id, 100, key="x", operator="till"),
    }[operation]
    # when money would go in or out
    with pytest.raises(MemberFrozen) as refused:
        call()
    # then it is refused and nothing changes
    assert refused.value.code == "member_frozen"
    assert count_rows("ledger_entry") == rows
    assert ledger.get_balance(member_id) == balance
    assert_ledger_ok()


@pytest.mark.parametrize("status", ["frozen", "lost"])
def test_frozen_or_lost_card_still_settles_what_was_started(admin_id, make_member, status):
    # given a payment and two holds made before the card was frozen
    member_id = make_member(5_000, 1_000)
    paid = ledger.debit(member_id, 1_200, key="pay", operator="till")
    to_capture = ledger.hold(member_id, 600, key="h1", operator="till")
    to_void = ledger.hold(member_id, 600, key="h2", operator="till")
    _set_status(admin_id, member_id, status)
    # when they are refunded, captured and voided
    ledger.refund(paid.entry_id, 1_200, key="refund", operator="till")
    captured = ledger.capture(to_capture.entry_id, 500, key="cap", operator="till")
    ledger.void(to_void.entry_id, key="void", operator="till")
    ledger.refund(captured.entry_id, 100, key="refund-cap", operator="till")
    # then the settlements went through (money only goes back or stays where the hold put it)
    assert ledger.get_balance(member_id).available_fen == 6_000 - 500 + 100
    assert ledger.get_balance(member_id).held_fen == 0
    assert_ledger_ok()


def test_retry_of_a_debit_made_before_the_card_was_frozen_is_replayed(admin_id, make_member):
    # given a debit, after which the card is frozen
    member_id = make_member(1_000)
    first = ledger.debit(member_id, 300, key="pay", operator="till")
    _set_status(admin_id, member_id, "frozen")
    # when the till retries it
    again = ledger.debit(member_id, 300, key="pay", operator="till")
    # then it is the original success, not member_frozen
    assert again.replayed and again.entry_id == first.entry_id
    assert buckets(member_id) == (700, 0, 0)
    assert_ledger_ok()


def test_reactivated_card_can_pay_again(admin_id, make_member):
    # given a card frozen and then reactivated
    member_id = make_member(1_000)
    _set_status(admin_id, member_id, "frozen")
    with pytest.raises(MemberFrozen):
        ledger.debit(member_id, 300, key="pay", operator="till")
    _set_status(admin_id, member_id, "active")
    # when the same payment is tried again with the same key
    posting = ledger.debit(member_id, 300, key="pay", operator="till")
    # then it now goes through (the refused attempt did not use up the key)
    assert not posting.replayed
    assert buckets(member_id) == (700, 0, 0)
    assert_ledger_ok()
