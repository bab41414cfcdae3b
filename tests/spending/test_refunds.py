"""Refunds of order payments (balance part to its buckets, WeChat part through WeChat Pay's refund API
and refund-notify) and refunds of WeChat Pay recharges, through HTTP with the fake WeChat."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.org.models import AuditLog
from mp_backend.recharge.models import Coupon
from tests.conftest import assert_ledger_ok, count_rows
from tests.recharge.helpers import start_recharge
from tests.spending.helpers import balance, pay


def refund(admin, payment_id: int, amount_fen: int, request_id: str, status: int = 201):  # type: ignore[no-untyped-def]
    return admin(
        "POST",
        f"/admin/api/payments/{payment_id}/refunds",
        {"amount_fen": amount_fen, "request_id": request_id, "reason": "顾客退货"},
        status,
    )


def payment_id_of(admin, client, token, order_no: str) -> int:  # type: ignore[no-untyped-def]
    from mp_backend.spending.models import OrderPayment

    db.session.rollback()
    return db.session.scalars(select(OrderPayment.id).where(OrderPayment.order_no == order_no)).one()


def test_balance_refund_partial_full_and_over(client, admin, payer):
    # given a payment of 20 yuan taken from 80 principal + 20 bonus
    token, _ = payer("ivy", principal_fen=8_000, bonus_fen=2_000)
    pay(client, token, "SO-1", 2_000)
    assert balance(client, token) == {"principal_fen": 6_400, "bonus_fen": 1_600, "held_fen": 0, "available_fen": 8_000}
    pid = payment_id_of(admin, client, token, "SO-1")
    # a partial refund goes back to the buckets pro rata, at once
    first = refund(admin, pid, 500, "rf-1")
    assert first["refund"]["status"] == "success" and first["refund"]["balance_fen"] == 500
    assert balance(client, token) == {"principal_fen": 6_800, "bonus_fen": 1_700, "held_fen": 0, "available_fen": 8_500}
    # its retry is the same refund
    assert refund(admin, pid, 500, "rf-1")["replayed"] is True
    # more than is left is refused, nothing changes
    over = refund(admin, pid, 1_501, "rf-2", status=409)
    assert over["error"]["code"] == "refund_exceeds_payment"
    # the rest: the buckets are exactly as before the payment
    assert refund(admin, pid, 1_500, "rf-3")["payment"]["refunded_balance_fen"] == 2_000
    assert balance(client, token) == {
        "principal_fen": 8_000,
        "bonus_fen": 2_000,
        "held_fen": 0,
        "available_fen": 10_000,
    }
    assert refund(admin, pid, 1, "rf-4", status=409)["error"]["code"] == "refund_exceeds_payment"
    db.session.rollback()
    assert len(db.session.scalars(select(AuditLog).where(AuditLog.action == "payment_refund")).all()) == 2
    assert_ledger_ok()


def test_wechat_part_refund_with_refund_notify_and_its_replay(client, fake, admin, payer):
    # given a paid mixed payment: 10 yuan balance + 20 yuan WeChat
    token, _ = payer("jon", principal_fen=1_000)
    no = pay(client, token, "SO-2", 3_000)["out_trade_no"]
    assert fake.pay(no, client).acknowledged
    pid = payment_id_of(admin, client, token, "SO-2")
    # when the merchant refunds 25 yuan: 10 to balance at once, 15 through WeChat Pay
    answer = refund(admin, pid, 2_500, "rf-1")
    assert answer["refund"]["balance_fen"] == 1_000 and answer["refund"]["wechat_fen"] == 1_500
    assert answer["refund"]["status"] == "processing"
    assert balance(client, token)["available_fen"] == 1_000
    [call] = fake.calls_to("secapi/pay/refund")
    assert call.xml["refund_fee"] == "1500" and call.xml["total_fee"] == "2000" and call.xml["out_trade_no"] == no
    out_refund_no = answer["refund"]["out_refund_no"]
    # beyond the WeChat part is refused while the first is still processing
    assert refund(admin, pid, 501, "rf-2", status=409)["error"]["code"] == "refund_exceeds_payment"
    # then WeChat's refund notification (twice) settles it once
    assert fake.notify_refund(out_refund_no, client).acknowledged
    assert fake.notify_refund(out_refund_no, client).acknowledged
    got = admin("GET", f"/admin/api/payments/{pid}")
    assert got["refunded_wechat_fen"] == 1_500 and got["refunded_balance_fen"] == 1_000
    # a tampered or foreign notification is refused
    assert not fake.notify_refund(out_refund_no, client, refund_fee=1).acknowledged
    bad = client.post(
        "/wechat/pay/refund-notify", data=b"<xml><return_code>SUCCESS</return_code><req_info>AAAA</req_info></xml>"
    )
    assert b"FAIL" in bad.data
    assert refund(admin, pid, 500, "rf-3")["refund"]["wechat_fen"] == 500
    assert count_rows("payment_refund") == 2
    assert_ledger_ok()


def test_failed_wechat_refund_can_be_refunded_again(client, fake, admin, payer):
    token, _ = payer("kim")
    no = pay(client, token, "SO-3", 1_000)["out_trade_no"]
    assert fake.pay(no, client).acknowledged
    pid = payment_id_of(admin, client, token, "SO-3")
    first = refund(admin, pid, 1_000, "rf-1")["refund"]
    assert fake.notify_refund(first["out_refund_no"], client, refund_status="CHANGE").acknowledged
    assert admin("GET", f"/admin/api/payments/{pid}")["refunded_wechat_fen"] == 0
    fake.refunds.clear()
    fake.orders[no].refunded_fee = 0
    assert refund(admin, pid, 1_000, "rf-2")["refund"]["status"] == "processing"
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# Recharge refunds


def recharge(client, fake, token, rule_id: int) -> str:  # type: ignore[no-untyped-def]
    no = start_recharge(client, token, rule_id=rule_id)["out_trade_no"]
    assert fake.pay(no, client).acknowledged
    return no  # type: ignore[no-any-return]


def refund_recharge(admin, no: str, status: int = 201):  # type: ignore[no-untyped-def]
    return admin("POST", f"/admin/api/recharge-orders/{no}/refund", {"reason": "顾客要求退款"}, status)


def test_recharge_refund_untouched_takes_everything_back(client, fake, admin, rule, payer):
    token, _ = payer("lea")
    no = recharge(client, fake, token, rule["id"])  # 100 yuan + 10 bonus
    asked = refund_recharge(admin, no)
    assert asked["replayed"] is False
    assert (asked["cash_fen"], asked["take_fen"], asked["bonus_spent_fen"]) == (10_000, 11_000, 0)
    assert balance(client, token) == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 11_000, "available_fen": 0}
    [call] = fake.calls_to("secapi/pay/refund")
    assert call.xml["refund_fee"] == "10000"
    # asked twice: the same refund, said to be one asked before
    again = refund_recharge(admin, no)
    assert again["id"] == asked["id"] and again["replayed"] is True
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert balance(client, token) == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 0, "available_fen": 0}
    assert_ledger_ok()


@pytest.mark.parametrize("app_overrides", [{"RECHARGE_REFUND_BONUS_POLICY": "deduct_spent_bonus"}])
def test_recharge_refund_deducts_spent_bonus(client, fake, admin, rule, payer):
    token, _ = payer("max")
    no = recharge(client, fake, token, rule["id"])
    pay(client, token, "SO-1", 1_100)  # proportional: 10 yuan principal, 1 yuan bonus
    assert balance(client, token) == {"principal_fen": 9_000, "bonus_fen": 900, "held_fen": 0, "available_fen": 9_900}
    asked = refund_recharge(admin, no)
    # principal back 90 (what is left), bonus 9 back, 1 spent: 89 in cash
    assert (asked["principal_fen"], asked["bonus_fen"], asked["bonus_spent_fen"]) == (9_000, 900, 100)
    assert asked["cash_fen"] == 8_900 and asked["take_fen"] == 9_900
    assert fake.calls_to("secapi/pay/refund")[0].xml["refund_fee"] == "8900"
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert balance(client, token)["available_fen"] == 0
    assert_ledger_ok()


@pytest.mark.parametrize("app_overrides", [{"RECHARGE_REFUND_BONUS_POLICY": "refuse"}])
def test_recharge_refund_refused_after_bonus_spent(client, fake, admin, rule, payer):
    token, _ = payer("ned")
    no = recharge(client, fake, token, rule["id"])
    pay(client, token, "SO-1", 1_100)
    refused = refund_recharge(admin, no, status=409)
    assert refused["error"]["code"] == "recharge_bonus_spent"
    assert balance(client, token)["held_fen"] == 0 and fake.calls_to("secapi/pay/refund") == []
    assert count_rows("recharge_refund") == 0
    assert_ledger_ok()


def test_spending_between_request_and_notification_cannot_shrink_the_take_back(client, fake, admin, rule, payer):
    # given a member with 50 yuan of her own besides the 100 + 10 recharge
    token, _ = payer("oli", principal_fen=5_000)
    no = recharge(client, fake, token, rule["id"])
    asked = refund_recharge(admin, no)
    assert asked["take_fen"] == 11_000 and asked["cash_fen"] == 10_000
    assert balance(client, token)["available_fen"] == 5_000
    # when she spends everything she can before WeChat confirms
    assert pay(client, token, "SO-1", 5_000)["status"] == "paid"
    assert pay(client, token, "SO-2", 100)["status"] == "pending"  # balance is held: all WeChat
    # then the notification takes back exactly what was held
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert balance(client, token) == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 0, "available_fen": 0}
    assert_ledger_ok()


@pytest.mark.parametrize("app_overrides", [{"SPENDING_POLICY": "proportional"}, {"SPENDING_POLICY": "bonus_first"}])
def test_recharge_refund_takes_back_exactly_the_buckets_the_recharge_gave(client, fake, admin, rule, payer):
    # given a member with 50 yuan of her own and 30 yuan of gift money from elsewhere
    token, _ = payer("quin", principal_fen=5_000, bonus_fen=3_000)
    # and a recharge of 100 yuan with 10 yuan bonus
    no = recharge(client, fake, token, rule["id"])
    assert balance(client, token) == {
        "principal_fen": 15_000,
        "bonus_fen": 4_000,
        "held_fen": 0,
        "available_fen": 19_000,
    }
    # when the merchant refunds the recharge
    asked = refund_recharge(admin, no)
    # then exactly the recharge's 100 principal and 10 bonus are held, whatever the spending policy
    # (proportional would have held 86.84 principal + 23.16 bonus, bonus first 80 + 30)
    assert (asked["principal_fen"], asked["bonus_fen"], asked["cash_fen"]) == (10_000, 1_000, 10_000)
    assert balance(client, token) == {
        "principal_fen": 5_000,
        "bonus_fen": 3_000,
        "held_fen": 11_000,
        "available_fen": 8_000,
    }
    # and WeChat's confirmation takes exactly those buckets: her own money is as it was
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert balance(client, token) == {"principal_fen": 5_000, "bonus_fen": 3_000, "held_fen": 0, "available_fen": 8_000}
    assert_ledger_ok()


def test_refused_recharge_refund_gives_the_exact_buckets_back(client, fake, admin, rule, payer):
    # given the same member and recharge, and a refund WeChat then refuses
    token, _ = payer("ruth", principal_fen=5_000, bonus_fen=3_000)
    no = recharge(client, fake, token, rule["id"])
    asked = refund_recharge(admin, no)
    assert fake.notify_refund(asked["out_refund_no"], client, refund_status="CHANGE").acknowledged
    # then every bucket is back as it was before the refund was asked
    assert balance(client, token) == {
        "principal_fen": 15_000,
        "bonus_fen": 4_000,
        "held_fen": 0,
        "available_fen": 19_000,
    }
    assert_ledger_ok()


def test_failed_recharge_refund_releases_the_hold_and_coupons_are_voided_on_success(client, fake, admin, payer):  # type: ignore[no-untyped-def]
    template = admin(
        "POST", "/admin/api/coupon-templates", {"name": "满100减10", "kind": "amount_off", "value": 1_000}, 201
    )
    rule = admin(
        "POST",
        "/admin/api/rules",
        {"name": "充50送券", "amount_fen": 5_000, "coupon_template_id": template["id"], "coupon_qty": 2},
        201,
    )
    token, _ = payer("pia")
    no = recharge(client, fake, token, rule["id"])
    asked = refund_recharge(admin, no)
    assert fake.notify_refund(asked["out_refund_no"], client, refund_status="REFUNDCLOSE").acknowledged
    assert balance(client, token) == {"principal_fen": 5_000, "bonus_fen": 0, "held_fen": 0, "available_fen": 5_000}
    assert refund_recharge(admin, no, status=409)["error"]["code"] == "recharge_already_refunded"
    db.session.rollback()
    assert {c.status for c in db.session.scalars(select(Coupon))} == {"unused"}
    assert_ledger_ok()


# ---------------------------------------------------------------------------------------------------
# One refund-notify path for both kinds (order payments F..., recharges Q...)


@pytest.fixture(params=["payment", "recharge"])
def processing_refund(request, client, fake, admin, rule, payer):  # type: ignore[no-untyped-def]
    """(kind, out_refund_no, token, balance once WeChat confirms, balance if it never does): a refund of
    either kind waiting for WeChat's notification."""
    token, _ = payer("tess")
    if request.param == "payment":
        no = pay(client, token, "SO-9", 2_000)["out_trade_no"]
        assert fake.pay(no, client).acknowledged
        asked = refund(admin, payment_id_of(admin, client, token, "SO-9"), 2_000, "rf-1")["refund"]
        return request.param, asked["out_refund_no"], token, 0, 0
    asked = refund_recharge(admin, recharge(client, fake, token, rule["id"]))
    return request.param, asked["out_refund_no"], token, 0, 11_000


def refund_status(kind: str, out_refund_no: str) -> str:
    from mp_backend.spending.models import PaymentRefund, RechargeRefund

    model = PaymentRefund if kind == "payment" else RechargeRefund
    db.session.rollback()
    return db.session.scalars(select(model.status).where(model.out_refund_no == out_refund_no)).one()


def test_refund_notify_refuses_what_does_not_match_and_settles_once(client, fake, processing_refund):
    kind, out_refund_no, token, after_success, _ = processing_refund
    # a notification whose amount, order or refund number is not ours is refused and settles nothing
    assert not fake.notify_refund(out_refund_no, client, refund_fee=1).acknowledged
    assert not fake.notify_refund(out_refund_no, client, out_trade_no="someone-elses").acknowledged
    ghost = copy.copy(fake.refunds[out_refund_no])  # the same refund at WeChat, under a number we never made
    ghost.out_refund_no = out_refund_no[0] + "0" * 24
    fake.refunds[ghost.out_refund_no] = ghost
    assert not fake.notify_refund(ghost.out_refund_no, client).acknowledged
    assert not fake.notify_refund(out_refund_no, client, refund_id="").acknowledged
    assert refund_status(kind, out_refund_no) == "processing"
    # the real one settles it; its replay is acknowledged and changes nothing
    assert fake.notify_refund(out_refund_no, client).acknowledged
    assert refund_status(kind, out_refund_no) == "success"
    before = balance(client, token)
    assert before["available_fen"] + before["held_fen"] == after_success
    assert fake.notify_refund(out_refund_no, client).acknowledged
    # a "replay" naming another WeChat refund id is not ours to acknowledge
    assert not fake.notify_refund(out_refund_no, client, refund_id="50000000000000000000000000000001").acknowledged
    assert balance(client, token) == before
    assert_ledger_ok()


def test_refund_notify_failure_settles_once_and_then_acknowledges(client, fake, processing_refund):
    kind, out_refund_no, token, _, after_failure = processing_refund
    assert fake.notify_refund(out_refund_no, client, refund_status="REFUNDCLOSE").acknowledged
    assert refund_status(kind, out_refund_no) == "failed"
    # WeChat's retries of a failed refund are acknowledged and change nothing
    assert fake.notify_refund(out_refund_no, client, refund_status="REFUNDCLOSE").acknowledged
    assert fake.notify_refund(out_refund_no, client).acknowledged
    assert refund_status(kind, out_refund_no) == "failed"
    assert balance(client, token)["available_fen"] == after_failure
    assert_ledger_ok()
