"""Members pay orders through HTTP: from balance, or balance held plus WeChat Pay for the rest, with the
fake WeChat signing what WeChat signs. Every scenario ends with the ledger invariants."""

from __future__ import annotations

import time_machine

from jobs.spending import reconcile_pending_payments
from mp_backend.members import cards
from mp_backend.models_base import utcnow
from tests.conftest import assert_ledger_ok, count_rows
from tests.spending.helpers import balance, bearer, error_of, pay


def test_pay_fully_from_balance_with_the_card_discount(client, payer, card_types):
    # given a gold-card member (95 %) with 100 yuan
    token, member_id = payer("ann", principal_fen=8_000, bonus_fen=2_000)
    cards.grant_card(member_id, card_types["gold"], only_non_members=False, source="test", reference="t")
    # when she pays a 20-yuan order
    paid = pay(client, token, "SO-1", 2_000, request_id="r-1")
    # then 19 yuan are debited from balance, the discount shown
    assert paid["status"] == "paid" and paid["payable_fen"] == 1_900 and paid["discount_fen"] == 100
    assert paid["balance_fen"] == 1_900 and paid["wechat_fen"] == 0 and "pay_params" not in paid
    assert "9.5 折" in paid["summary"] and paid["replayed"] is False
    assert balance(client, token)["available_fen"] == 8_100
    got = client.get("/api/payments/SO-1", headers=bearer(token)).get_json()
    assert got["status"] == "paid" and got["payable_fen"] == 1_900
    # a retried request (same request_id) is one debit
    again = pay(client, token, "SO-1", 2_000, request_id="r-1")
    assert again["replayed"] is True and balance(client, token)["available_fen"] == 8_100
    # the same request id for another order, or the same order again: refused, nothing changes
    assert pay(client, token, "SO-2", 2_000, request_id="r-1", status=409)["code"] == "idempotency_conflict"
    assert pay(client, token, "SO-1", 2_000, request_id="r-2", status=409)["code"] == "order_already_paid"
    assert client.get("/api/payments/nope", headers=bearer(token)).status_code == 404
    assert count_rows("ledger_entry") == 3  # two seeds and one debit
    assert_ledger_ok()


def test_partly_balance_rest_wechat_pay_captured_by_the_notification(client, fake, payer):
    # given a member with 10 yuan
    token, _ = payer("ben", principal_fen=1_000)
    # when he pays a 30-yuan order
    started = pay(client, token, "SO-10", 3_000, request_id="r-10")
    # then the 10 yuan are held and WeChat Pay is asked for the 20 left
    assert started["status"] == "pending" and started["balance_fen"] == 1_000 and started["wechat_fen"] == 2_000
    assert started["pay_params"]["package"].startswith("prepay_id=")
    assert balance(client, token) == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 1_000, "available_fen": 0}
    no = started["out_trade_no"]
    [unified] = fake.calls_to("pay/unifiedorder")
    assert unified.xml["total_fee"] == "2000" and unified.xml["appid"] == "wxsandboxwxa000001"
    # a retried request answers with the same payment and WeChat's same prepay
    again = pay(client, token, "SO-10", 3_000, request_id="r-10")
    assert (
        again["replayed"]
        and again["out_trade_no"] == no
        and again["pay_params"]["package"] == started["pay_params"]["package"]
    )
    # a tampered notification (amount) is refused and captures nothing
    fake.mark_paid(no)
    assert not fake.notify_payment(no, client, total_fee=1).acknowledged
    assert balance(client, token)["held_fen"] == 1_000
    # when WeChat notifies the payment (and again: WeChat retries)
    assert fake.notify_payment(no, client).acknowledged
    assert fake.notify_payment(no, client).acknowledged
    # then the hold is captured once
    assert balance(client, token) == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 0, "available_fen": 0}
    got = client.get("/api/payments/SO-10", headers=bearer(token)).get_json()
    assert got["status"] == "paid" and got["paid_at"]
    assert count_rows("ledger_entry") == 3  # seed, hold, capture
    assert_ledger_ok()


def test_wechat_payment_failure_voids_the_hold(client, fake, payer):
    token, _ = payer("cat", principal_fen=1_000)
    no = pay(client, token, "SO-20", 1_500)["out_trade_no"]
    fake.mark_paid(no)
    result = fake.notify_payment(no, client, result_code="FAIL", err_code="NOTENOUGH", transaction_id="")
    assert result.acknowledged
    assert client.get("/api/payments/SO-20", headers=bearer(token)).get_json()["status"] == "failed"
    assert balance(client, token) == {"principal_fen": 1_000, "bonus_fen": 0, "held_fen": 0, "available_fen": 1_000}
    # a late SUCCESS for the failed payment captures nothing (and is acknowledged for the merchant to refund)
    assert fake.notify_payment(no, client).acknowledged
    assert balance(client, token)["available_fen"] == 1_000
    assert_ledger_ok()


def test_expired_wechat_part_is_closed_and_voided_by_the_job(client, fake, payer):
    token, _ = payer("dan", principal_fen=1_000)
    paid_late = pay(client, token, "SO-30", 1_500)["out_trade_no"]
    unpaid = pay(client, token, "SO-31", 100)  # the balance is all held by SO-30: WeChat Pay for all of it
    assert unpaid["status"] == "pending"
    fake.mark_paid(paid_late)  # paid, but the notification is lost
    assert reconcile_pending_payments() == {}  # too early
    with time_machine.travel(utcnow().timestamp() + 5 * 60, tick=False):
        assert reconcile_pending_payments() == {"paid": 1, "waiting": 1}
    with time_machine.travel(utcnow().timestamp() + 20 * 60, tick=False):
        assert reconcile_pending_payments() == {"failed": 1}
        assert reconcile_pending_payments() == {}
    assert fake.orders[unpaid["out_trade_no"]].trade_state == "CLOSED"
    assert client.get("/api/payments/SO-30", headers=bearer(token)).get_json()["status"] == "paid"
    assert client.get("/api/payments/SO-31", headers=bearer(token)).get_json()["status"] == "failed"
    assert balance(client, token) == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 0, "available_fen": 0}
    assert_ledger_ok()


def test_lost_or_frozen_card_cannot_pay(client, payer, org):
    from mp_backend.members import service as members

    token, member_id = payer("eve", principal_fen=1_000)
    members.set_status(member_id, "lost", staff_id=org["staff"]["admin"], reason="挂失")
    assert pay(client, token, "SO-40", 100, status=409)["code"] == "member_frozen"
    assert count_rows("order_payment") == 0
    assert balance(client, token)["available_fen"] == 1_000
    assert_ledger_ok()


def test_bad_input_changes_nothing(client, payer):
    token, _ = payer("fay", principal_fen=1_000)
    for body in (
        {"order_no": "x", "amount_fen": 0, "pay_password": "802413", "request_id": "a"},
        {"order_no": "x", "amount_fen": 1.5, "pay_password": "802413", "request_id": "a"},
        {"order_no": "", "amount_fen": 1, "pay_password": "802413", "request_id": "a"},
        {"order_no": "x" * 65, "amount_fen": 1, "pay_password": "802413", "request_id": "a"},
        {"order_no": "x", "amount_fen": 1, "pay_password": "802413"},
    ):
        response = client.post("/api/payments", json=body, headers=bearer(token))
        assert response.status_code == 400, body
        error_of(response)
    assert client.post("/api/payments", json={}).status_code in (400, 401)
    assert count_rows("order_payment") == 0
    assert_ledger_ok()
