"""Payments that arrive when the order or the card is no longer as it was: a card frozen before
WeChat's notification, an order we had already closed, a principal cap passed by the credit. The money
reached the merchant and is the member's: WeChat is acknowledged, nothing is lost or credited twice,
and the merchant sees an anomaly. Also: orders and statistics by payment time."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import update

from jobs.recharge import reconcile_pending_orders
from mp_backend.extensions import db
from mp_backend.models_base import utcnow
from mp_backend.org.models import Merchant
from tests.conftest import assert_ledger_ok, count_rows
from tests.recharge.helpers import me, member_login, order_row, start_recharge


def anomaly_kinds(admin) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(a["kind"] for a in admin("GET", "/admin/api/recharge-anomalies")["items"])


def set_card(admin, member_id: int, status: str) -> None:  # type: ignore[no-untyped-def]
    admin("POST", f"/admin/api/members/{member_id}/status", {"status": status, "reason": "会员挂失"})


def test_card_frozen_before_the_notification_is_acknowledged_held_and_credited_once_active(client, fake, admin, rule):
    # given an order placed while the card was active, then the card is reported lost
    token, member_id = member_login(client, "frank")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    set_card(admin, member_id, "lost")
    # when WeChat notifies the payment, and retries
    assert fake.pay(no, client).acknowledged
    assert fake.notify_payment(no, client).acknowledged
    # then WeChat stops retrying, the money is recorded as paid but not credited, the merchant sees why
    order = order_row(no)
    assert order.status == "paid_uncredited" and order.transaction_id == fake.orders[no].transaction_id
    assert count_rows("ledger_entry") == 0 and count_rows("points_entry") == 0
    assert anomaly_kinds(admin) == ["member_frozen"]
    [stats] = admin("GET", "/admin/api/recharge-stats?group_by=rule")["items"]
    assert (stats["paid_fen"], stats["bonus_fen"], stats["uncredited_orders"]) == (10_000, 0, 1)
    assert [o["out_trade_no"] for o in admin("GET", "/admin/api/recharge-orders?status=paid_uncredited")["items"]] == [
        no
    ]
    # and neither the console nor the job can credit it while the card is still lost
    assert admin("POST", f"/admin/api/recharge-orders/{no}/credit", status=409)["error"]["code"] == "member_frozen"
    assert reconcile_pending_orders() == {}
    # when the card is active again, the job credits it once
    set_card(admin, member_id, "active")
    assert reconcile_pending_orders() == {"credited_held": 1}
    assert reconcile_pending_orders() == {}
    assert order_row(no).status == "paid"
    body = me(client, token)
    assert body["balance"]["available_fen"] == 11_000 and body["points"] == 100
    # and nothing credits it again: the console, a late WeChat retry
    assert admin("POST", f"/admin/api/recharge-orders/{no}/credit", status=409)["error"]["code"] == "order_not_held"
    assert fake.notify_payment(no, client).acknowledged
    assert count_rows("ledger_entry") == 2 and count_rows("points_entry") == 1
    assert_ledger_ok()


def test_the_console_credits_a_held_order_once_the_card_is_active(client, fake, admin, rule):
    token, member_id = member_login(client, "gwen")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    set_card(admin, member_id, "frozen")
    assert fake.pay(no, client).acknowledged
    set_card(admin, member_id, "active")
    credited = admin("POST", f"/admin/api/recharge-orders/{no}/credit")
    assert credited["status"] == "paid" and credited["balance"]["available_fen"] == 11_000
    assert reconcile_pending_orders() == {}
    assert count_rows("ledger_entry") == 2
    assert_ledger_ok()


def test_payment_for_an_order_we_closed_credits_and_the_cap_overrun_is_recorded(client, fake, admin, rule):
    # given a merchant cap of 150 yuan and two orders of 100 placed at 0 principal (both allowed)
    db.session.execute(update(Merchant).values(principal_cap_fen=15_000))
    db.session.commit()
    token, _ = member_login(client, "hana")
    first = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    late = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    assert fake.pay(first, client).acknowledged
    # and the second expires: the job closes it at WeChat and here
    with time_machine.travel(utcnow().timestamp() + 19 * 60, tick=False):
        assert reconcile_pending_orders() == {"closed": 1}
    assert order_row(late).status == "closed"
    # when WeChat says it was paid after all (the member paid as the close went out)
    fake.orders[late].trade_state = "NOTPAY"
    result = fake.pay(late, client)
    # then the money is credited, in full, and the merchant sees both the late payment and the cap
    assert result.acknowledged
    order = order_row(late)
    assert order.status == "paid" and order.paid_via == "notify"
    assert me(client, token)["balance"]["principal_fen"] == 20_000
    assert anomaly_kinds(admin) == ["balance_cap_exceeded", "paid_after_close"]
    # and a retry changes nothing
    assert fake.notify_payment(late, client).acknowledged
    assert count_rows("ledger_entry") == 4 and count_rows("recharge_anomaly") == 2
    assert_ledger_ok()


def test_orders_and_stats_by_payment_time(client, fake, admin, rule):
    # given an order placed one day and paid the next (the notification came late)
    token, _ = member_login(client, "ivy")
    placed = utcnow()
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fake.mark_paid(no)
    with time_machine.travel(placed.timestamp() + 25 * 3600, tick=False):
        assert fake.notify_payment(no, client).acknowledged
    day2 = (placed + timedelta(hours=24)).isoformat()

    def orders(query: str) -> list[str]:
        return [o["out_trade_no"] for o in admin("GET", f"/admin/api/recharge-orders?{query}")["items"]]

    def paid_fen(query: str) -> int:
        return sum(row["paid_fen"] for row in admin("GET", f"/admin/api/recharge-stats?{query}")["items"])

    # then by creation time it belongs to day 1, by payment time to day 2
    assert orders(f"created_from={day2}") == []
    assert orders(f"paid_from={day2}") == [no]
    assert orders(f"paid_to={day2}") == []
    # and a period report counts the money when it arrived (from/to are payment times)
    assert paid_fen(f"from={day2}") == 10_000
    assert paid_fen(f"to={day2}") == 0
    assert paid_fen(f"created_from={day2}") == 0
    assert_ledger_ok()
