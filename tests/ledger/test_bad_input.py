"""Requests the ledger must refuse: each one gives the right error and changes nothing at all.

``refused(...)`` checks, around the call, that the error is of the exact class with the exact code,
that no ledger row and no audit row was written, and that the given wallets did not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from mp_backend.errors import (
    AppError,
    Conflict,
    Forbidden,
    InsufficientBalance,
    InvalidAmount,
    MemberNotFound,
    NotFound,
    ValidationFailed,
)
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.models import LedgerEntry
from mp_backend.ledger.service import MAX_AMOUNT_FEN, MAX_KEY_LENGTH
from mp_backend.members import service as members
from mp_backend.org import service as org_service
from tests.conftest import assert_ledger_ok, count_rows

UNKNOWN_ID = 10**9


@contextmanager
def refused(error_class: type[AppError], code: str, *member_ids: int) -> Iterator[None]:
    rows, audits = count_rows("ledger_entry"), count_rows("audit_log")
    balances = [ledger.get_balance(m) for m in member_ids]
    with pytest.raises(AppError) as info:
        yield
    assert type(info.value) is error_class, f"{type(info.value).__name__}: {info.value}"
    assert info.value.code == code
    assert count_rows("ledger_entry") == rows
    assert count_rows("audit_log") == audits
    assert [ledger.get_balance(m) for m in member_ids] == balances


# Just the stores and one HQ admin, for tests that need no other role (conftest's ``org`` has them all).
@pytest.fixture
def stores(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    org_service.ensure_merchant("测试商户")
    org_service.ensure_region("east", "华东区")
    return {code: org_service.ensure_store(code, code, "east").id for code in ("sh01", "sh02")}


@pytest.fixture
def admin_id(stores) -> int:  # type: ignore[no-untyped-def]
    return org_service.create_staff("admin", "hq_admin", "password-1").id


# ---------------------------------------------------------------------------------------------------
# Amounts

BAD_AMOUNTS = [0, -1, -500, 1.5, 100.0, "100", True, False, 10**12, MAX_AMOUNT_FEN + 1]
AMOUNT_IDS = ["zero", "minus-one", "negative", "fraction", "float", "string", "True", "False", "10**12", "max+1"]


def _operations(member_id: int, hold_id: int, paid_id: int) -> dict[str, Callable[[object], object]]:
    return {
        "credit": lambda amount: ledger.credit(member_id, amount, key="bad", operator="t"),  # type: ignore[arg-type]
        "credit_bonus": lambda amount: ledger.credit(member_id, amount, bucket="bonus", key="bad", operator="t"),  # type: ignore[arg-type]
        "debit": lambda amount: ledger.debit(member_id, amount, key="bad", operator="t"),  # type: ignore[arg-type]
        "hold": lambda amount: ledger.hold(member_id, amount, key="bad", operator="t"),  # type: ignore[arg-type]
        "capture": lambda amount: ledger.capture(hold_id, amount, key="bad", operator="t"),  # type: ignore[arg-type]
        "refund": lambda amount: ledger.refund(paid_id, amount, key="bad", operator="t"),  # type: ignore[arg-type]
    }


@pytest.fixture
def funded(make_member):  # type: ignore[no-untyped-def]
    """A member with money, an open hold and a payment, and the operations on them."""
    member_id = make_member(50_000, 5_000)
    hold_id = ledger.hold(member_id, 10_000, key="setup-hold", operator="t").entry_id
    paid_id = ledger.debit(member_id, 10_000, key="setup-debit", operator="t").entry_id
    return member_id, _operations(member_id, hold_id, paid_id)


OPERATIONS = ["credit", "credit_bonus", "debit", "hold", "capture", "refund"]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=AMOUNT_IDS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_bad_amount_is_refused(funded, operation, amount):
    # given a funded member with a hold and a payment
    member_id, operations = funded
    # when an operation is asked with an amount that is not a positive integer of fen within the limit
    # then it is refused as invalid_amount and nothing changes
    with refused(InvalidAmount, "invalid_amount", member_id):
        operations[operation](amount)
    assert_ledger_ok()


@pytest.mark.parametrize("amount", [*BAD_AMOUNTS, None], ids=[*AMOUNT_IDS, "None"])
def test_bad_withdrawal_amount_is_refused(admin_id, make_member, amount):
    # given a member with principal
    member_id = make_member(50_000)
    # when a withdrawal of a bad amount (or of no amount) is recorded
    # then it is refused, and no audit row is written
    with refused(InvalidAmount, "invalid_amount", member_id):
        members.withdraw_offline(member_id, amount, key="bad", staff_id=admin_id, reason="退卡")  # type: ignore[arg-type]
    assert_ledger_ok()


@pytest.mark.parametrize("operation", ["credit", "credit_bonus", "debit", "hold", "refund"])
def test_missing_amount_is_refused_where_it_is_required(funded, operation):
    # given a funded member
    member_id, operations = funded
    # when the amount is left out (only a capture may omit it, meaning "all of the hold")
    # then it is refused
    with refused(InvalidAmount, "invalid_amount", member_id):
        operations[operation](None)
    assert_ledger_ok()


def test_invalid_amount_error_tells_the_limit(make_member):
    # given a member
    member_id = make_member()
    # when too much is credited
    with pytest.raises(InvalidAmount) as info:
        ledger.credit(member_id, MAX_AMOUNT_FEN + 1, key="k", operator="t")
    # then the error says what the limit is, as a 400
    assert info.value.status == 400
    assert info.value.to_dict()["error"]["details"] == {"max_fen": MAX_AMOUNT_FEN}


def test_the_largest_allowed_amount_is_accepted(make_member):
    # given a member
    member_id = make_member()
    # when exactly the limit is credited
    posting = ledger.credit(member_id, MAX_AMOUNT_FEN, key="k", operator="t")
    # then it goes through (the limit is inclusive)
    assert ledger.get_balance(member_id).principal_fen == MAX_AMOUNT_FEN == posting.amount_fen
    assert_ledger_ok()


def test_unknown_bucket_is_refused(make_member):
    # given a member
    member_id = make_member(100)
    # when a credit names a bucket that does not exist
    # then it is refused
    with refused(ValidationFailed, "invalid_bucket", member_id):
        ledger.credit(member_id, 100, bucket="held", key="k", operator="t")
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Keys and operators


BAD_KEYS = ["", "   ", "\t\n", "k" * (MAX_KEY_LENGTH + 1), None, 12345]
BAD_KEY_IDS = ["empty", "blank", "whitespace", "too-long", "None", "int"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
def test_bad_idempotency_key_is_refused(make_member, key):
    # given a member
    member_id = make_member(1_000)
    # when a credit carries no usable key
    # then it is refused
    with refused(ValidationFailed, "invalid_idempotency_key", member_id):
        ledger.credit(member_id, 100, key=key, operator="t")
    assert_ledger_ok()


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_LENGTH + 1)], ids=["empty", "too-long"])
@pytest.mark.parametrize("operation", ["debit", "hold", "capture", "void", "refund", "withdrawal", "reversal"])
def test_every_operation_checks_its_key(funded, admin_id, operation, key):
    # given a funded member with a hold, a payment and a credit
    member_id, _ = funded
    hold_id = ledger.hold(member_id, 100, key="h2", operator="t").entry_id
    paid_id = ledger.debit(member_id, 100, key="d2", operator="t").entry_id
    credit_id = ledger.credit(member_id, 100, key="c2", operator="t").entry_id
    call = {
        "debit": lambda: ledger.debit(member_id, 100, key=key, operator="t"),
        "hold": lambda: ledger.hold(member_id, 100, key=key, operator="t"),
        "capture": lambda: ledger.capture(hold_id, key=key, operator="t"),
        "void": lambda: ledger.void(hold_id, key=key, operator="t"),
        "refund": lambda: ledger.refund(paid_id, 100, key=key, operator="t"),
        "withdrawal": lambda: members.withdraw_offline(member_id, 100, key=key, staff_id=admin_id, reason="x"),
        "reversal": lambda: members.reverse_credit(credit_id, key=key, staff_id=admin_id, reason="x"),
    }[operation]
    # when the request carries no usable key
    # then it is refused
    with refused(ValidationFailed, "invalid_idempotency_key", member_id):
        call()
    assert_ledger_ok()


def test_key_of_the_maximum_length_is_accepted(make_member):
    # given a member
    member_id = make_member()
    key = "k" * MAX_KEY_LENGTH
    # when a credit uses a 128-character key
    posting = ledger.credit(member_id, 100, key=key, operator="t")
    # then it is stored whole, and a retry finds it
    assert ledger.credit(member_id, 100, key=key, operator="t").entry_id == posting.entry_id
    stored = db.session.scalar(select(LedgerEntry.idempotency_key).where(LedgerEntry.id == posting.entry_id))
    assert stored == key
    assert_ledger_ok()


@pytest.mark.parametrize("operator", ["", None, "o" * 65], ids=["empty", "None", "too-long"])
def test_missing_operator_is_refused(make_member, operator):
    # given a member
    member_id = make_member(1_000)
    # when a request does not say who makes it
    # then it is refused
    with refused(ValidationFailed, "invalid_operator", member_id):
        ledger.debit(member_id, 100, key="k", operator=operator)  # type: ignore[arg-type]
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Unknown members and entries, and entries of the wrong kind


@pytest.mark.parametrize("operation", ["credit", "debit", "hold"])
def test_unknown_member_is_refused(app, operation):
    # given no member with that id
    call = {
        "credit": lambda: ledger.credit(UNKNOWN_ID, 100, key="k", operator="t"),
        "debit": lambda: ledger.debit(UNKNOWN_ID, 100, key="k", operator="t"),
        "hold": lambda: ledger.hold(UNKNOWN_ID, 100, key="k", operator="t"),
    }[operation]
    # when money is moved for it
    # then it is refused as member_not_found
    with refused(MemberNotFound, "member_not_found"):
        call()
    assert_ledger_ok()


def test_withdrawal_for_unknown_member_is_refused(admin_id):
    # given no member with that id
    # when a withdrawal is recorded for it
    # then it is refused, and no audit row is written
    with refused(MemberNotFound, "member_not_found"):
        members.withdraw_offline(UNKNOWN_ID, 100, key="k", staff_id=admin_id, reason="退卡")


def test_balance_of_unknown_member_is_not_found(app):
    # given no member with that id
    # when its balance is asked for
    # then
    with pytest.raises(MemberNotFound):
        ledger.get_balance(UNKNOWN_ID)


@pytest.fixture
def entries(make_member, admin_id):  # type: ignore[no-untyped-def]
    """One entry of every kind, for one member, plus the member id under "member"."""
    member_id = make_member(50_000, 5_000)
    found = {"member": member_id}
    found["credit"] = ledger.credit(member_id, 1_000, key="e-credit", operator="t").entry_id
    found["debit"] = ledger.debit(member_id, 1_000, key="e-debit", operator="t").entry_id
    found["hold"] = ledger.hold(member_id, 1_000, key="e-hold", operator="t").entry_id
    hold_2 = ledger.hold(member_id, 1_000, key="e-hold-2", operator="t").entry_id
    found["capture"] = ledger.capture(hold_2, 500, key="e-capture", operator="t").entry_id
    hold_3 = ledger.hold(member_id, 1_000, key="e-hold-3", operator="t").entry_id
    found["void"] = ledger.void(hold_3, key="e-void", operator="t").entry_id
    found["refund"] = ledger.refund(found["debit"], 100, key="e-refund", operator="t").entry_id
    found["withdrawal"] = members.withdraw_offline(member_id, 100, key="e-wd", staff_id=admin_id, reason="x").entry_id
    credit_2 = ledger.credit(member_id, 100, key="e-credit-2", operator="t").entry_id
    found["reversal"] = members.reverse_credit(credit_2, key="e-rev", staff_id=admin_id, reason="x").entry_id
    found["unknown"] = UNKNOWN_ID
    return found


@pytest.mark.parametrize(
    "target", ["unknown", "credit", "debit", "capture", "void", "refund", "withdrawal", "reversal", "as-string", "None"]
)
@pytest.mark.parametrize("operation", ["capture", "void"])
def test_capture_or_void_of_something_that_is_not_a_hold_is_refused(entries, operation, target):
    # given entries of every kind
    entry_id = {"as-string": str(entries["hold"]), "None": None}.get(target, entries.get(target))
    # when one that is not an open hold's id is captured or voided
    # then it is refused as hold_not_found (an id that is not an int at all: invalid_entry_id)
    error, code = (ValidationFailed, "invalid_entry_id") if target in WRONG_TYPES else (NotFound, "hold_not_found")
    with refused(error, code, entries["member"]):
        if operation == "capture":
            ledger.capture(entry_id, 100, key="k", operator="t")  # type: ignore[arg-type]
        else:
            ledger.void(entry_id, key="k", operator="t")  # type: ignore[arg-type]
    assert_ledger_ok()


WRONG_TYPES = ("as-string", "None")


@pytest.mark.parametrize(
    "target", ["unknown", "credit", "hold", "void", "refund", "withdrawal", "reversal", "as-string", "None"]
)
def test_refund_of_something_that_is_not_a_payment_is_refused(entries, target):
    # given entries of every kind
    entry_id = {"as-string": str(entries["debit"]), "None": None}.get(target, entries.get(target))
    # when one that is not a debit or a capture is refunded
    # then it is refused as payment_not_found (an id that is not an int at all: invalid_entry_id)
    error, code = (ValidationFailed, "invalid_entry_id") if target in WRONG_TYPES else (NotFound, "payment_not_found")
    with refused(error, code, entries["member"]):
        ledger.refund(entry_id, 100, key="k", operator="t")  # type: ignore[arg-type]
    assert_ledger_ok()


@pytest.mark.parametrize("target", ["unknown", "debit", "hold", "capture", "void", "refund", "withdrawal", "reversal"])
def test_reversal_of_something_that_is_not_a_credit_is_refused(entries, admin_id, target):
    # given entries of every kind
    # when one that is not a credit is reversed
    # then it is refused: a missing entry is not found, another kind is not reversible
    error, code = (NotFound, "entry_not_found") if target == "unknown" else (Conflict, "entry_not_reversible")
    with refused(error, code, entries["member"]):
        members.reverse_credit(entries[target], key="k", staff_id=admin_id, reason="x")
    assert_ledger_ok()


def test_find_entry_of_unknown_id_is_not_found(app):
    # given no entry with that id
    # when it is looked up
    # then
    with pytest.raises(NotFound) as info:
        ledger.find_entry(UNKNOWN_ID)
    assert info.value.code == "entry_not_found"


# ---------------------------------------------------------------------------------------------------
# Balance, holds and refunds


@pytest.mark.parametrize("operation", ["debit", "hold"])
def test_spending_more_than_available_is_refused(make_member, operation):
    # given 10.00 principal + 2.00 bonus, of which 3.00 is held
    member_id = make_member(1_000, 200)
    ledger.hold(member_id, 300, key="h", operator="t")
    spend = ledger.debit if operation == "debit" else ledger.hold
    # when 9.01 is spent (only 9.00 is available: held money cannot be spent twice)
    # then it is refused, and the error says what is available
    with refused(InsufficientBalance, "insufficient_balance", member_id):
        spend(member_id, 901, key="k", operator="t")
    with pytest.raises(InsufficientBalance) as info:
        spend(member_id, 901, key="k", operator="t")
    assert info.value.details == {"available_fen": 900}
    # and exactly 9.00 still goes through
    spend(member_id, 900, key="k", operator="t")
    assert ledger.get_balance(member_id).available_fen == 0
    assert_ledger_ok()


def test_capture_of_more_than_held_is_refused(make_member):
    # given a hold of 5.00 on a wallet with plenty more
    member_id = make_member(10_000)
    held = ledger.hold(member_id, 500, key="h", operator="t")
    # when 5.01 is captured
    # then it is refused, and the hold stays open
    with refused(Conflict, "capture_exceeds_hold", member_id):
        ledger.capture(held.entry_id, 501, key="k", operator="t")
    assert ledger.capture(held.entry_id, 500, key="k2", operator="t").amount_fen == 500
    assert_ledger_ok()


@pytest.mark.parametrize(
    ("settle", "then"),
    [
        ("void", "capture"),
        ("capture", "void"),
        ("capture", "capture"),
        ("void", "void"),
        ("capture-part", "capture"),
        ("capture-part", "void"),
    ],
)
def test_a_settled_hold_cannot_be_settled_again(make_member, settle, then):
    # given a hold that was captured (in full or in part) or voided
    member_id = make_member(10_000)
    held = ledger.hold(member_id, 500, key="h", operator="t")
    if settle == "void":
        ledger.void(held.entry_id, key="s", operator="t")
    else:
        ledger.capture(held.entry_id, 200 if settle == "capture-part" else None, key="s", operator="t")
    # when it is captured or voided again under a new key (even the uncaptured rest)
    # then it is refused as already settled
    with refused(Conflict, "hold_already_settled", member_id):
        if then == "capture":
            ledger.capture(held.entry_id, 100, key="k", operator="t")
        else:
            ledger.void(held.entry_id, key="k", operator="t")
    assert_ledger_ok()


def test_refund_of_more_than_paid_is_refused(make_member):
    # given a payment of 5.00
    member_id = make_member(10_000)
    paid = ledger.debit(member_id, 500, key="d", operator="t")
    # when 5.01 is refunded
    # then it is refused, and the error says how much can be refunded
    with refused(Conflict, "refund_exceeds_payment", member_id):
        ledger.refund(paid.entry_id, 501, key="k", operator="t")
    assert_ledger_ok()


def test_partial_refunds_cannot_add_up_to_more_than_paid(make_member):
    # given a proportional payment of 10.00 refunded 4.00 and 5.00 already
    member_id = make_member(7_000, 3_000)
    paid = ledger.debit(member_id, 1_000, key="d", operator="t")
    ledger.refund(paid.entry_id, 400, key="r1", operator="t")
    ledger.refund(paid.entry_id, 500, key="r2", operator="t")
    # when 1.01 more is refunded
    # then it is refused (only 1.00 is left), and 1.00 still goes through
    with refused(Conflict, "refund_exceeds_payment", member_id):
        ledger.refund(paid.entry_id, 101, key="r3", operator="t")
    with pytest.raises(Conflict) as info:
        ledger.refund(paid.entry_id, 101, key="r3", operator="t")
    assert info.value.details == {"refundable_fen": 100}
    ledger.refund(paid.entry_id, 100, key="r3", operator="t")
    with refused(Conflict, "refund_exceeds_payment", member_id):
        ledger.refund(paid.entry_id, 1, key="r4", operator="t")
    assert ledger.get_balance(member_id) == ledger.Balance(7_000, 3_000, 0)
    assert_ledger_ok()


def test_refund_of_a_partial_capture_is_limited_to_what_was_captured(make_member):
    # given a hold of 7.00 captured at 3.00
    member_id = make_member(10_000)
    held = ledger.hold(member_id, 700, key="h", operator="t")
    captured = ledger.capture(held.entry_id, 300, key="c", operator="t")
    # when 3.01 is refunded
    # then it is refused: the released 4.00 was never taken
    with refused(Conflict, "refund_exceeds_payment", member_id):
        ledger.refund(captured.entry_id, 301, key="k", operator="t")
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Offline withdrawal and reversal: who, where, why, and only principal


def test_withdrawal_by_a_clerk_is_refused(org, make_member):
    # given a member and a clerk of the store
    member_id = make_member(5_000)
    # when the clerk records a withdrawal in their own store
    # then the role has no such permission
    with refused(Forbidden, "permission_denied", member_id):
        members.withdraw_offline(
            member_id, 100, key="k", staff_id=org["staff"]["sh01_clerk"], reason="退卡", store_id=org["stores"]["sh01"]
        )
    assert_ledger_ok()


@pytest.mark.parametrize(
    ("who", "store"),
    [("sh01_manager", "sh02"), ("sh01_manager", None), ("east_manager", "bj01"), ("east_manager", None)],
)
def test_withdrawal_outside_the_staff_members_stores_is_refused(org, make_member, who, store):
    # given a store or region manager
    member_id = make_member(5_000)
    store_id = org["stores"][store] if store else None
    # when they record a withdrawal for a store outside their scope (or for no store: HQ only)
    # then it is refused
    with refused(Forbidden, "store_out_of_scope", member_id):
        members.withdraw_offline(member_id, 100, key="k", staff_id=org["staff"][who], reason="退卡", store_id=store_id)
    assert_ledger_ok()


def test_withdrawal_by_unknown_staff_is_refused(make_member, stores):
    # given no staff member with that id
    member_id = make_member(5_000)
    # when a withdrawal names them
    # then
    with refused(Forbidden, "staff_not_found", member_id):
        members.withdraw_offline(member_id, 100, key="k", staff_id=UNKNOWN_ID, reason="退卡")


def test_withdrawal_of_bonus_money_is_refused(admin_id, make_member):
    # given 10.00 principal and 20.00 bonus
    member_id = make_member(1_000, 2_000)
    # when 10.01 is withdrawn (the member has 30.00, but only principal can be paid out)
    # then it is refused
    with refused(InsufficientBalance, "insufficient_balance", member_id):
        members.withdraw_offline(member_id, 1_001, key="k", staff_id=admin_id, reason="退卡")
    assert_ledger_ok()


def test_withdrawal_of_held_money_is_refused(admin_id, make_member):
    # given 10.00 principal, of which 6.00 is held
    member_id = make_member(1_000)
    ledger.hold(member_id, 600, key="h", operator="t")
    # when 5.00 is withdrawn
    # then it is refused
    with refused(InsufficientBalance, "insufficient_balance", member_id):
        members.withdraw_offline(member_id, 500, key="k", staff_id=admin_id, reason="退卡")
    assert_ledger_ok()


@pytest.mark.parametrize("reason", ["", "   ", None], ids=["empty", "blank", "None"])
def test_withdrawal_without_a_reason_is_refused(admin_id, make_member, reason):
    # given a member
    member_id = make_member(5_000)
    # when a withdrawal gives no reason
    # then it is refused
    with refused(ValidationFailed, "reason_required", member_id):
        members.withdraw_offline(member_id, 100, key="k", staff_id=admin_id, reason=reason)  # type: ignore[arg-type]
    assert_ledger_ok()


@pytest.mark.parametrize("who", ["sh01_manager", "sh01_clerk"])
def test_reversal_needs_a_role_that_may_reverse(org, make_member, who):
    # given a credit
    member_id = make_member()
    credit = ledger.credit(member_id, 1_000, key="c", operator="t")
    # when a store manager or a clerk reverses it in their own store
    # then it is refused
    with refused(Forbidden, "permission_denied", member_id):
        members.reverse_credit(
            credit.entry_id, key="k", staff_id=org["staff"][who], reason="输错", store_id=org["stores"]["sh01"]
        )
    assert_ledger_ok()


@pytest.mark.parametrize("reason", ["", "  ", None], ids=["empty", "blank", "None"])
def test_reversal_without_a_reason_is_refused(admin_id, make_member, reason):
    # given a credit
    member_id = make_member()
    credit = ledger.credit(member_id, 1_000, key="c", operator="t")
    # when it is reversed without a reason
    # then
    with refused(ValidationFailed, "reason_required", member_id):
        members.reverse_credit(credit.entry_id, key="k", staff_id=admin_id, reason=reason)  # type: ignore[arg-type]
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Input the database would reject: the service must refuse it as a clean AppError (not a 500), and
# the same way on SQLite and MariaDB.


def test_unknown_store_is_refused_cleanly(stores, make_member):
    # given a member and no store with that id
    member_id = make_member(1_000)
    # when a debit names the unknown store
    # then it is refused as store_not_found, not an IntegrityError from the foreign key
    with refused(NotFound, "store_not_found", member_id):
        ledger.debit(member_id, 100, key="k", operator="t", store_id=UNKNOWN_ID)
    assert_ledger_ok()


def test_reference_longer_than_its_column_is_refused(make_member):
    # given a member
    member_id = make_member(1_000)
    # when a debit carries a 65-character order reference (the column holds 64)
    # then it is refused, instead of being stored whole on SQLite and raising DataError on MariaDB
    with refused(ValidationFailed, "invalid_reference", member_id):
        ledger.debit(member_id, 100, key="k", operator="t", reference="R" * 65)
    assert_ledger_ok()


def test_note_longer_than_its_column_is_cut_like_a_reason(make_member):
    # given a member
    member_id = make_member()
    # when a credit carries a 300-character note (the column holds 255)
    posting = ledger.credit(member_id, 100, key="k", operator="t", note="备" * 300)
    # then it is stored cut to 255 characters on every backend, as withdrawal and reversal reasons are
    stored = db.session.scalar(select(LedgerEntry.note).where(LedgerEntry.id == posting.entry_id))
    assert stored == "备" * 255
    assert_ledger_ok()
