from mp_backend.ledger import service as ledger
from tests.conftest import assert_ledger_ok


def test_debit_hold_capture_refund_round_trip(make_member):
    # given a member with 100.00 principal and 10.00 bonus
    member_id = make_member(10_000, 1_000)
    # when they pay 55.00, hold 20.00 and capture 15.00 of it, then refund both in part
    paid = ledger.debit(member_id, 5_500, key="d1", operator="test")
    held = ledger.hold(member_id, 2_000, key="h1", operator="test")
    captured = ledger.capture(held.entry_id, 1_500, key="c1", operator="test")
    ledger.refund(paid.entry_id, 1_000, key="r1", operator="test")
    ledger.refund(captured.entry_id, 1_500, key="r2", operator="test")
    # then
    assert paid.principal_delta_fen + paid.bonus_delta_fen == -5_500
    assert ledger.get_balance(member_id).available_fen == 11_000 - 5_500 - 1_500 + 1_000 + 1_500
    assert ledger.get_balance(member_id).held_fen == 0
    assert ledger.debit(member_id, 5_500, key="d1", operator="test").replayed
    assert_ledger_ok()
