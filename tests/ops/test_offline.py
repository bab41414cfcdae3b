"""Recharges at the counter: rule rewards, free amounts, the cap, frozen cards, store scope, receipts."""

from __future__ import annotations

import pytest

from mp_backend.ledger import service as ledger
from mp_backend.members import service as members
from mp_backend.recharge import service as recharge
from tests.conftest import assert_ledger_ok, count_rows
from tests.web.conftest import error_of

from .conftest import bearer, call


def offline(client, token, status=201, **body):  # type: ignore[no-untyped-def]
    body.setdefault("method", "cash")
    body.setdefault("store_code", "sh01")
    return call(client, token, "POST", "/admin/api/offline-recharges", status, json=body)


def test_offline_recharge_under_a_rule_gives_its_rewards_once_per_receipt(client, staff_token, rule, make_member):
    # given a member with a card number and the rule "100 yuan, 10 bonus, 100 points"
    member_id = make_member(phone="13800000001")
    card_no = members.get_member(member_id).card_no
    # when the clerk records a cash recharge under the rule with receipt R-1
    first = offline(client, staff_token, member={"card_no": card_no}, rule_id=rule["id"], receipt_no="R-1")
    # then principal, bonus and points are credited, and the answer says so
    assert (first["amount_fen"], first["bonus_fen"], first["points"]) == (10_000, 1_000, 100)
    assert first["balance"]["principal_fen"] == 10_000 and first["balance"]["bonus_fen"] == 1_000
    assert first["rewards"] == ["赠送 10.00 元", "赠送 100 积分"] and first["replayed"] is False
    # when the same receipt is sent again (a double click, a retry)
    again = offline(client, staff_token, 200, member={"phone": "13800000001"}, rule_id=rule["id"], receipt_no="R-1")
    # then the first result comes back and nothing more is credited
    assert again["replayed"] is True and again["id"] == first["id"] and again["balance"] == first["balance"]
    assert ledger.get_balance(member_id).available_fen == 11_000
    # and the same receipt for another amount is a conflict, not a second recharge
    response = client.post(
        "/admin/api/offline-recharges",
        json={"member": {"id": member_id}, "store_code": "sh01", "method": "cash", "receipt_no": "R-1", "rule_id": 999},
        headers=bearer(staff_token),
    )
    assert response.status_code == 404 and error_of(response)["code"] == "rule_not_found"
    recharge.save_settings(_admin_id(), {"free_amount_enabled": True, "free_min_fen": 100, "free_max_fen": 100_000})
    response = client.post(
        "/admin/api/offline-recharges",
        json={
            "member": {"id": member_id},
            "store_code": "sh01",
            "method": "cash",
            "receipt_no": "R-1",
            "amount_fen": 500,
        },
        headers=bearer(staff_token),
    )
    assert response.status_code == 409 and error_of(response)["code"] == "receipt_conflict"
    # the same receipt number at another store is another receipt
    offline(client, staff_token, member={"id": member_id}, store_code="sh02", amount_fen=500, receipt_no="R-1")
    assert ledger.get_balance(member_id).available_fen == 11_500
    assert count_rows("audit_log") >= 2
    assert_ledger_ok()


def _admin_id() -> int:
    from sqlalchemy import select

    from mp_backend.extensions import db
    from mp_backend.org.models import Staff

    return db.session.scalar(select(Staff.id).where(Staff.username == "admin"))  # type: ignore[return-value]


def test_free_amount_only_when_allowed_and_within_bounds(client, staff_token, make_member):
    member_id = make_member()
    # given free amounts are off (the default)
    response = client.post(
        "/admin/api/offline-recharges",
        json={
            "member": {"id": member_id},
            "store_code": "sh01",
            "method": "cash",
            "receipt_no": "F-1",
            "amount_fen": 5_000,
        },
        headers=bearer(staff_token),
    )
    assert response.status_code == 409 and error_of(response)["code"] == "free_amount_disabled"
    # when the merchant allows 1-1000 yuan
    recharge.save_settings(_admin_id(), {"free_amount_enabled": True, "free_min_fen": 100, "free_max_fen": 100_000})
    # then a free amount within the bounds is credited, without rewards; one outside is refused
    body = offline(
        client, staff_token, member={"id": member_id}, method="card_terminal", amount_fen=5_000, receipt_no="F-1"
    )
    assert body["bonus_fen"] == 0 and body["rewards"] == [] and body["method"] == "card_terminal"
    response = client.post(
        "/admin/api/offline-recharges",
        json={
            "member": {"id": member_id},
            "store_code": "sh01",
            "method": "cash",
            "receipt_no": "F-2",
            "amount_fen": 50,
        },
        headers=bearer(staff_token),
    )
    assert response.status_code == 400 and error_of(response)["code"] == "amount_out_of_range"
    assert ledger.get_balance(member_id).principal_fen == 5_000
    assert_ledger_ok()


@pytest.mark.parametrize("status", ["frozen", "lost"])
def test_cap_and_frozen_or_lost_cards_are_refused_and_change_nothing(client, staff_token, rule, make_member, status):
    # given one member just below the 5,000-yuan cap and one whose card is frozen or lost
    near_cap = make_member(495_000)
    blocked = make_member()
    members.set_status(blocked, status, staff_id=_admin_id(), reason="测试")
    # when the clerk records 100 yuan for each
    for member_id, receipt, code in ((near_cap, "C-1", "balance_cap_exceeded"), (blocked, "C-2", "member_frozen")):
        response = client.post(
            "/admin/api/offline-recharges",
            json={
                "member": {"id": member_id},
                "store_code": "sh01",
                "method": "cash",
                "receipt_no": receipt,
                "rule_id": rule["id"],
            },
            headers=bearer(staff_token),
        )
        # then each is refused with its code
        assert response.status_code == 409 and error_of(response)["code"] == code
    assert ledger.get_balance(near_cap).principal_fen == 495_000
    assert ledger.get_balance(blocked).available_fen == 0
    assert count_rows("offline_recharge") == 0
    assert_ledger_ok()


def test_clerk_records_only_at_their_own_store(client, clerk_token, rule, make_member):
    member_id = make_member()
    # when the clerk of sh01 records a recharge at sh02
    response = client.post(
        "/admin/api/offline-recharges",
        json={
            "member": {"id": member_id},
            "store_code": "sh02",
            "method": "cash",
            "receipt_no": "S-1",
            "rule_id": rule["id"],
        },
        headers=bearer(clerk_token),
    )
    # then it is refused; at their own store it goes through
    assert response.status_code == 403 and error_of(response)["code"] == "store_out_of_scope"
    body = offline(client, clerk_token, member={"id": member_id}, rule_id=rule["id"], receipt_no="S-1")
    assert body["store_code"] == "sh01" and body["operator"].startswith("staff:")
    assert ledger.get_balance(member_id).available_fen == 11_000
    assert_ledger_ok()


def test_bad_input_is_a_clear_4xx(client, staff_token, make_member):
    member_id = make_member()
    cases = [
        (
            {"member": {}, "store_code": "sh01", "method": "cash", "receipt_no": "B", "amount_fen": 100},
            "member_ref_invalid",
        ),
        ({"member": {"id": member_id}, "method": "cash", "receipt_no": "B", "amount_fen": 100}, "store_required"),
        (
            {
                "member": {"card_no": "nope"},
                "store_code": "sh01",
                "method": "cash",
                "receipt_no": "B",
                "amount_fen": 100,
            },
            "member_not_found",
        ),
        (
            {"member": {"id": member_id}, "store_code": "sh01", "method": "cash", "receipt_no": "B"},
            "rule_or_amount_required",
        ),
        (
            {"member": {"id": member_id}, "store_code": "sh01", "method": "alipay", "receipt_no": "B", "amount_fen": 1},
            "invalid_request",
        ),
        (
            {"member": {"id": member_id}, "store_code": "sh01", "method": "cash", "receipt_no": "B", "amount_fen": 1.5},
            "invalid_request",
        ),
    ]
    for body, code in cases:
        response = client.post("/admin/api/offline-recharges", json=body, headers=bearer(staff_token))
        assert 400 <= response.status_code < 500 and error_of(response)["code"] == code, (body, response.get_json())
    assert ledger.get_balance(member_id).available_fen == 0
    assert_ledger_ok()
