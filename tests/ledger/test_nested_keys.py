"""A ledger call inside a larger service call (``in_transaction()``): the driver cursor is made once per
transaction, and a key already written is answered from its row without a second one, whether the plan
looks the key up first (a refund) or only after the UNIQUE key refused its INSERT (credit, debit, ...)."""

from __future__ import annotations

import pytest

from mp_backend.errors import IdempotencyConflict
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.ledger.service import _Tx
from mp_backend.members import service as members
from mp_backend.transaction import transactional
from tests.conftest import assert_ledger_ok, count_rows


@pytest.fixture
def member_id(app) -> int:  # type: ignore[no-untyped-def]
    member = members.create_member(name="嵌套")
    ledger.credit(member.id, 10_000, key="fund", operator="test")
    return member.id


def test_one_driver_cursor_per_transaction(member_id):
    first = _Tx.current()
    assert _Tx.current() is first  # the same transaction: the same cursor
    db.session.commit()
    after_commit = _Tx.current()
    assert after_commit is not first
    db.session.rollback()
    assert _Tx.current() is not after_commit


@transactional
def _nested(member_id: int, operation, *args, **kwargs):  # type: ignore[no-untyped-def]
    ledger.get_balance(member_id)  # the caller's own work first: the ledger call runs in its transaction
    return operation(*args, **kwargs)


@pytest.mark.parametrize(
    "operation",
    [
        lambda m: _nested(m, ledger.credit, m, 300, key="k", operator="test"),
        lambda m: _nested(m, ledger.debit, m, 300, key="k", operator="test"),
        lambda m: _nested(m, ledger.withdraw, m, 300, key="k", operator="test", reason="退还"),
    ],
    ids=["credit", "debit", "withdraw"],
)
def test_a_nested_call_with_a_written_key_replays_it(member_id, operation):
    # given a nested call that went through
    first = operation(member_id)
    rows = count_rows("ledger_entry")
    # when it is made again (a retry), nested in a new transaction
    again = operation(member_id)
    # then the first row answers, nothing more is written, and the caller's transaction goes on
    assert again.replayed and again.entry_id == first.entry_id and again.balance == first.balance
    assert count_rows("ledger_entry") == rows
    assert_ledger_ok()


def test_a_nested_call_with_a_written_key_and_another_request_is_a_conflict(member_id):
    _nested(member_id, ledger.credit, member_id, 300, key="k", operator="test")
    with pytest.raises(IdempotencyConflict):
        _nested(member_id, ledger.credit, member_id, 301, key="k", operator="test")
    assert ledger.get_balance(member_id).principal_fen == 10_300
    assert_ledger_ok()


def test_a_nested_refund_with_a_written_key_replays_before_touching_its_guard(member_id):
    paid = ledger.debit(member_id, 1_000, key="pay", operator="test")
    first = _nested(member_id, ledger.refund, paid.entry_id, 400, key="r", operator="test")
    again = _nested(member_id, ledger.refund, paid.entry_id, 400, key="r", operator="test")
    assert again.replayed and again.entry_id == first.entry_id
    assert ledger.get_balance(member_id).principal_fen == 9_400
    assert_ledger_ok()
