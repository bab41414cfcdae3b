"""The lost notification: the job asks WeChat Pay (orderquery), settles paid orders through the same
path as a notification, and closes expired ones at WeChat and here. Running it twice changes nothing."""

from __future__ import annotations

import time_machine
from sqlalchemy import select

from jobs.recharge import reconcile_pending_orders
from mp_backend.extensions import db
from mp_backend.models_base import utcnow
from mp_backend.recharge.models import RechargeOrder
from tests.conftest import assert_ledger_ok, count_rows
from tests.recharge.helpers import me, member_login, start_recharge


def status_of(no: str) -> RechargeOrder:
    db.session.rollback()
    return db.session.scalars(select(RechargeOrder).where(RechargeOrder.out_trade_no == no)).one()


def test_paid_order_without_notification_is_settled_by_the_job(client, fake, admin):
    rule = admin("POST", "/admin/api/rules", {"name": "充100送10", "amount_fen": 10_000, "bonus_fen": 1_000}, 201)
    token, _ = member_login(client, "quinn")
    paid = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    unpaid = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fresh = None
    fake.mark_paid(paid)  # the member paid, but the notification is lost
    # too early: nothing is asked
    assert reconcile_pending_orders() == {}
    with time_machine.travel(utcnow().timestamp() + 5 * 60, tick=False):
        fresh = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
        assert reconcile_pending_orders() == {"paid": 1, "waiting": 1}
        assert reconcile_pending_orders() == {"waiting": 1}
    assert status_of(paid).status == "paid" and status_of(paid).paid_via == "query"
    assert me(client, token)["balance"]["available_fen"] == 11_000
    # the late notification afterwards is acknowledged and credits nothing more
    assert fake.notify_payment(paid, client).acknowledged
    assert count_rows("ledger_entry") == 2
    # past its expiry the unpaid order is closed at WeChat and here
    with time_machine.travel(utcnow().timestamp() + 19 * 60, tick=False):
        result = reconcile_pending_orders()
    assert result == {"closed": 1, "waiting": 1}
    assert status_of(unpaid).status == "closed" and fake.orders[unpaid].trade_state == "CLOSED"
    assert status_of(fresh).status == "pending"
    assert len(fake.calls_to("pay/closeorder")) == 1
    assert me(client, token)["balance"]["available_fen"] == 11_000
    assert_ledger_ok()
