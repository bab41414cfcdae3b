"""Points wired into the money paths, through HTTP with the fake WeChat: earning at balance payments,
WeChat captures, till charges and captures, WeChat and offline recharges; pending points and their
release job; refunds taking back (or voiding) earned points and giving back redeemed ones; redemption at
checkout. Every retry is sent again and the points ledger checked (``assert_ledger_ok`` covers it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from mp_backend.extensions import db
from mp_backend.ledger import points
from mp_backend.loyalty import service as loyalty
from mp_backend.loyalty.models import PointsRefund
from mp_backend.models_base import utcnow
from mp_backend.spending import payments
from tests.conftest import assert_ledger_ok, count_rows
from tests.spending.helpers import balance, pay
from tests.spending.test_refunds import payment_id_of, recharge, refund, refund_recharge
from tests.web.conftest import bearer


def earn_rule(admin, trigger: str, per_yuan: int, store_id: int | None = None) -> None:  # type: ignore[no-untyped-def]
    admin(
        "POST", "/admin/api/points/rules", {"trigger": trigger, "points_per_yuan": per_yuan, "store_id": store_id}, 201
    )


def set_points(admin, **values: Any) -> None:  # type: ignore[no-untyped-def]
    admin("PUT", "/admin/api/points/settings", values)


def points_of(client, token: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(usable, pending) as /api/me shows them."""
    body = client.get("/api/me", headers=bearer(token)).get_json()
    return body["points"], body["points_pending"]


def refund_rows(payment_key: str) -> list[PointsRefund]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(PointsRefund).where(PointsRefund.payment_key == payment_key).order_by(PointsRefund.id)
        )
    )


def test_balance_payment_earns_once_and_its_refunds_take_back_pro_rata_once(client, admin, payer):
    # given 2 points per yuan spent
    earn_rule(admin, "spend", 2)
    token, _ = payer("pia", principal_fen=10_000)
    # when a payment of 30 yuan is sent twice with one request id
    first = pay(client, token, "SO-1", 3_000, request_id="r-1")
    again = pay(client, token, "SO-1", 3_000, request_id="r-1")
    # then it earned 60 points once
    assert again["replayed"] is True and first["balance"] == again["balance"]
    assert points_of(client, token) == (60, 0)
    pid = payment_id_of(admin, client, token, "SO-1")
    # when 10 of the 30 yuan are refunded, twice with one request id
    refund(admin, pid, 1_000, "rf-1")
    refund(admin, pid, 1_000, "rf-1")
    # then a third of the points went back, once
    assert points_of(client, token) == (40, 0)
    # and the rest of the money takes back the rest of the points, exactly
    refund(admin, pid, 2_000, "rf-2")
    assert points_of(client, token) == (0, 0)
    rows = refund_rows(f"payment:{pid}")
    assert [(r.refund_fen, r.due, r.taken, r.shortfall) for r in rows] == [(1_000, 20, 20, 0), (2_000, 40, 40, 0)]
    assert_ledger_ok()


def test_wechat_part_earns_when_captured_once_and_its_refund_takes_back_once_per_notification(
    client, fake, admin, payer
):
    earn_rule(admin, "spend", 2)
    token, _ = payer("quin", principal_fen=1_000)
    # a mixed payment earns nothing until WeChat pays
    no = pay(client, token, "SO-2", 3_000)["out_trade_no"]
    assert points_of(client, token) == (0, 0)
    # WeChat's notification, and its retry: earned once on all 30 yuan
    assert fake.pay(no, client).acknowledged
    assert fake.notify_payment(no, client).acknowledged
    assert points_of(client, token) == (60, 0)
    pid = payment_id_of(admin, client, token, "SO-2")
    # a refund of 25: 10 from balance at once (20 points back) ...
    answer = refund(admin, pid, 2_500, "rf-1")
    assert points_of(client, token) == (40, 0)
    # ... and 15 through WeChat when it confirms (notified twice): 50 of 60 in all
    assert fake.notify_refund(answer["refund"]["out_refund_no"], client).acknowledged
    assert fake.notify_refund(answer["refund"]["out_refund_no"], client).acknowledged
    assert points_of(client, token) == (10, 0)
    assert [r.refund_key for r in refund_rows(f"payment:{pid}")] == [
        f"refund:{answer['refund']['id']}:{part}" for part in ("balance", "wechat")
    ]
    assert_ledger_ok()


def test_pending_points_void_on_refund_release_once_and_a_late_refund_never_goes_below_zero(client, admin, payer):
    # given 1 point per yuan, pending for 7 days
    earn_rule(admin, "spend", 1)
    set_points(admin, pending_days=7)
    token, member_id = payer("rita", principal_fen=20_000)
    pay(client, token, "SO-1", 10_000)
    pay(client, token, "SO-2", 5_000)
    # then both purchases' points are pending: shown as such, not usable
    assert points_of(client, token) == (0, 150)
    mine = client.get("/api/me/points", headers=bearer(token)).get_json()
    assert mine["balance"] == 0 and mine["pending"] == 150 and len(mine["pending_items"]) == 2
    # a refund before they become usable voids them
    refund(admin, payment_id_of(admin, client, token, "SO-1"), 10_000, "rf-1")
    assert points_of(client, token) == (0, 50)
    # the release job: nothing before the 7 days, then once however often it runs
    assert loyalty.release_pending(now=utcnow()) == 0
    later = utcnow() + timedelta(days=7, seconds=1)
    assert loyalty.release_pending(now=later) == 1
    assert loyalty.release_pending(now=later) == 0
    assert points_of(client, token) == (50, 0)
    # when the member spends 40 of them, then the purchase is refunded
    loyalty.exchange(member_id, 40, key="spend-some")
    refund(admin, payment_id_of(admin, client, token, "SO-2"), 5_000, "rf-2")
    # then what is left is taken back, never below zero, and the rest is recorded as not taken back
    assert points_of(client, token) == (0, 0)
    [late] = refund_rows(f"payment:{payment_id_of(admin, client, token, 'SO-2')}")
    assert (late.due, late.voided, late.taken, late.shortfall) == (50, 0, 10, 40)
    [early] = refund_rows(f"payment:{payment_id_of(admin, client, token, 'SO-1')}")
    assert (early.due, early.voided, early.taken, early.shortfall) == (100, 100, 0, 0)
    assert_ledger_ok()


def test_the_release_job_of_the_schedule_releases(app, make_member):
    from jobs import points as points_jobs
    from jobs import schedule  # noqa: F401  (the cron entry is registered: importing it must work)

    member_id = make_member()
    points.award_points(member_id, 30, key="p-1", source="spend", available_at=utcnow() + timedelta(seconds=1))
    db.session.commit()
    assert points.pending_balance(member_id) == 30
    db.session.execute(text("UPDATE points_lot SET available_at = :t"), {"t": utcnow() - timedelta(seconds=1)})
    db.session.commit()
    assert points_jobs.release_pending() == 1
    assert points_jobs.release_pending() == 0
    db.session.rollback()
    assert points.balance(member_id) == 30 and points.pending_balance(member_id) == 0
    assert_ledger_ok()


def test_till_charge_earns_by_the_stores_rule_once_per_key_and_refunds_take_back_once(till, member, admin, org):
    earn_rule(admin, "spend", 1)
    earn_rule(admin, "spend", 3, store_id=org["stores"]["sh01"])
    # a charge of 10.00 at sh01, sent twice with one key: 30 points once
    first = till.charge({"card_no": member["card_no"]}, 1_000, "T-1", key="c-1", status=201).get_json()
    again = till.charge({"card_no": member["card_no"]}, 1_000, "T-1", key="c-1", status=201).get_json()
    assert first["points_earned"] == 30 and again == first
    db.session.rollback()
    assert points.balance(member["id"]) == 30
    # a refund of 5.00 twice with one key: 15 back once
    body = {"charge_id": first["charge_id"], "amount_fen": 500}
    back = till.post("/open/api/v1/refunds", body, key="rf-1", status=201).get_json()
    assert till.post("/open/api/v1/refunds", body, key="rf-1", status=201).get_json() == back
    assert back["points_taken_back"] == 15
    db.session.rollback()
    assert points.balance(member["id"]) == 15
    # a hold captured at sh02 earns by the merchant-wide rule
    hold = till.hold({"card_no": member["card_no"]}, 2_000, "T-2", store_code="sh02", status=201).get_json()
    captured = till.post(f"/open/api/v1/holds/{hold['hold_id']}/capture", {"amount_fen": 1_500}, status=200).get_json()
    assert captured["points_earned"] == 15
    db.session.rollback()
    assert points.balance(member["id"]) == 30
    assert_ledger_ok()


def test_wechat_recharge_earns_once_and_its_refund_takes_back_reward_and_earned_points(
    client, fake, admin, rule, payer
):
    earn_rule(admin, "recharge", 1)
    token, _ = payer("sol")
    # the rule gives 100 points, the earning rule 1 per yuan of the 100 yuan: 200, notified twice
    no = recharge(client, fake, token, rule["id"])
    assert fake.notify_payment(no, client).acknowledged
    assert points_of(client, token) == (200, 0)
    asked = refund_recharge(admin, no)
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert fake.notify_refund(asked["out_refund_no"], client).acknowledged
    assert points_of(client, token) == (0, 0)
    [row] = refund_rows(f"recharge:{no}")
    assert (row.due, row.taken, row.shortfall) == (200, 200, 0)
    assert_ledger_ok()


def test_offline_recharge_earns_once_per_receipt(client, staff_token, admin, rule, make_member):
    from tests.ops.test_offline import offline

    earn_rule(admin, "recharge", 2)
    member_id = make_member(phone="13800000009")
    db.session.commit()
    first = offline(client, staff_token, member={"id": member_id}, rule_id=rule["id"], receipt_no="R-9")
    offline(client, staff_token, 200, member={"id": member_id}, rule_id=rule["id"], receipt_no="R-9")
    db.session.rollback()
    assert points.balance(member_id) == 100 + 200 and first["points"] == 100
    assert_ledger_ok()


def test_redemption_at_checkout_refused_clearly_then_used_and_given_back_by_refunds(client, admin, payer):
    token, member_id = payer("tia", principal_fen=10_000)
    points.award_points(member_id, 5_000, key="seed", source="test")
    db.session.commit()

    def pay_with(order_no: str, amount_fen: int, used: int, status: int = 201, request_id: str | None = None) -> Any:
        body = {"order_no": order_no, "amount_fen": amount_fen, "pay_password": "802413", "points": used}
        body["request_id"] = request_id or f"req-{order_no}"
        response = client.post("/api/payments", json=body, headers=bearer(token))
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()

    # over the merchant's share (50 % by default) and over what the member has: refused, nothing changes
    over_share = pay_with("SO-1", 8_000, 4_100, 409)
    assert over_share["error"]["code"] == "points_over_order_limit"
    assert over_share["error"]["details"]["max_points"] == 4_000
    over_have = pay_with("SO-2", 20_000, 6_000, 409)
    assert over_have["error"]["code"] == "insufficient_points" and over_have["error"]["details"]["available"] == 5_000
    assert pay_with("SO-3", 8_000, 0.5, 400)["error"]["code"]  # not an integer
    assert count_rows("order_payment") == 0 and points_of(client, token) == (5_000, 0)
    assert balance(client, token)["available_fen"] == 10_000
    # within both: 4,000 points take 40 yuan off an 80 yuan order, sent twice
    paid = pay_with("SO-4", 8_000, 4_000)
    assert pay_with("SO-4", 8_000, 4_000)["replayed"] is True
    assert (paid["payable_fen"], paid["points_used"], paid["points_fen"], paid["balance_fen"]) == (
        4_000,
        4_000,
        4_000,
        4_000,
    )
    assert "4000 积分抵扣 40.00 元" in paid["summary"]
    assert points_of(client, token) == (1_000, 0) and balance(client, token)["available_fen"] == 6_000
    # the same request id with other points is a conflict
    assert pay_with("SO-4", 8_000, 3_000, 409)["error"]["code"] == "idempotency_conflict"
    # a refund of half the money gives back half the points (rounded down), the rest the rest
    pid = payment_id_of(admin, client, token, "SO-4")
    refund(admin, pid, 1_999, "rf-1")
    assert points_of(client, token) == (1_000 + 1_999, 0)
    refund(admin, pid, 1_999, "rf-1")  # its retry: nothing more
    refund(admin, pid, 2_001, "rf-2")
    assert points_of(client, token) == (5_000, 0)
    assert_ledger_ok()


def test_points_may_not_pay_a_whole_order_and_a_failed_wechat_part_gives_them_back(client, admin, payer):
    set_points(admin, redeem_max_percent=100)
    token, member_id = payer("uma")
    points.award_points(member_id, 3_000, key="seed", source="test")
    db.session.commit()
    body = {"order_no": "SO-1", "amount_fen": 1_000, "pay_password": "802413", "points": 1_000, "request_id": "a"}
    whole = client.post("/api/payments", json=body, headers=bearer(token))
    assert whole.status_code == 409 and whole.get_json()["error"]["code"] == "points_cover_whole_order"
    # 10 of 30 yuan in points, the rest by WeChat, which then fails: the points come back once
    body.update(order_no="SO-2", amount_fen=3_000, request_id="b")
    pending = client.post("/api/payments", json=body, headers=bearer(token)).get_json()
    assert pending["status"] == "pending" and pending["wechat_fen"] == 2_000
    assert points_of(client, token) == (2_000, 0)
    db.session.rollback()
    pid = payment_id_of(admin, client, token, "SO-2")
    assert payments.fail_payment(pid, "测试：微信支付失败") is True
    assert payments.fail_payment(pid, "测试：再次") is False
    assert points_of(client, token) == (3_000, 0)
    assert_ledger_ok()


def test_ledger_check_names_a_pending_lot_made_usable_without_a_release(app, make_member):
    from mp_backend.ledger.check import check_ledger

    member_id = make_member()
    points.award_points(member_id, 30, key="p-1", source="spend", available_at=utcnow() + timedelta(days=3))
    db.session.commit()
    assert_ledger_ok()
    db.session.execute(text("UPDATE points_lot SET status = 'available'"))  # lots have no append-only trigger
    db.session.commit()
    problems = [str(p) for p in check_ledger()]
    assert any("available without a release entry" in p for p in problems), problems
