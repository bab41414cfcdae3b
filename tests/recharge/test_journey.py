"""Scan -> log in -> order -> pay -> notification -> balance and rewards, through HTTP, with the fake
WeChat signing what WeChat signs. Every scenario ends with the ledger invariants."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.recharge.models import Coupon, RechargeAnomaly
from mp_backend.wechat.fake import signed_pay_xml
from mp_backend.wechat.pay import parse_xml
from tests.conftest import assert_ledger_ok, count_rows
from tests.recharge.helpers import bearer, error_of, me, member_login, order_row, start_recharge

WXA_APPID = "wxsandboxwxa000001"
MP_APPID = "wxsandboxmp0000001"


def test_scan_login_order_notify_balance_and_rewards(client, fake, rule, admin):
    # given a member who scanned the rule's link (with a source tag) and logged in
    assert rule["link"].endswith(f"/r/{rule['code']}")
    assert client.get(f"/r/{rule['code']}?src=poster1").status_code == 200
    token, member_id = member_login(client, "alice")
    rules = client.get("/api/rules").get_json()["items"]
    assert [r["id"] for r in rules] == [rule["id"]]
    assert rules[0]["rewards"] == ["赠送 10.00 元", "赠送 100 积分"]
    # when she recharges under the rule
    started = start_recharge(client, token, rule_id=rule["id"], src="poster1")
    no = started["out_trade_no"]
    params = started["pay_params"]
    assert params["appId"] == WXA_APPID and params["package"].startswith("prepay_id=")
    assert params["signType"] == "HMAC-SHA256" and params["paySign"]
    [unified] = fake.calls_to("pay/unifiedorder")
    assert unified.xml["appid"] == WXA_APPID and unified.xml["total_fee"] == "10000"
    assert unified.xml["openid"] == "alice" and unified.xml["trade_type"] == "JSAPI"
    assert client.get(f"/api/recharges/{no}", headers=bearer(token)).get_json()["status"] == "pending"
    # and pays: WeChat notifies
    result = fake.pay(no, client)
    # then WeChat is told SUCCESS and the money, bonus and points are there
    assert result.acknowledged, result.body
    body = me(client, token)
    assert body["balance"] == {"principal_fen": 10_000, "bonus_fen": 1_000, "held_fen": 0, "available_fen": 11_000}
    assert body["points"] == 100
    status = client.get(f"/api/recharges/{no}", headers=bearer(token)).get_json()
    assert status["status"] == "paid" and status["balance"]["available_fen"] == 11_000
    assert status["rewards"] == ["赠送 10.00 元", "赠送 100 积分"] and status["src"] == "poster1"
    order = order_row(no)
    assert order.transaction_id == fake.orders[no].transaction_id and order.paid_via == "notify"
    # and the merchant sees it by source tag
    stats = admin("GET", "/admin/api/recharge-stats?group_by=src")["items"]
    assert stats == [
        {
            "key": "poster1",
            "orders": 1,
            "paid_orders": 1,
            "members": 1,
            "paid_fen": 10_000,
            "bonus_fen": 1_000,
            "coupons_granted": 0,
            "coupons_lapsed": 0,
            "uncredited_orders": 0,
        }
    ]
    listed = admin("GET", "/admin/api/recharge-orders?src=poster1&status=paid")["items"]
    assert [o["out_trade_no"] for o in listed] == [no]
    assert_ledger_ok()


def test_fifteen_retries_of_one_notification_credit_once(client, fake, rule):
    token, _ = member_login(client, "bob")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fake.mark_paid(no)
    results = [fake.notify_payment(no, client) for _ in range(15)]
    assert all(r.acknowledged for r in results)
    assert me(client, token)["balance"]["available_fen"] == 11_000
    assert me(client, token)["points"] == 100
    assert count_rows("ledger_entry") == 2 and count_rows("points_entry") == 1
    assert_ledger_ok()


@pytest.mark.parametrize("include_sign_type", [False, True])
def test_hmac_notification_with_or_without_sign_type(client, fake, rule, include_sign_type):
    token, _ = member_login(client, "carol")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fake.mark_paid(no)
    result = fake.notify_payment(no, client, include_sign_type=include_sign_type)
    assert ("<sign_type>" in result.xml_sent) is include_sign_type
    assert result.acknowledged
    assert me(client, token)["balance"]["principal_fen"] == 10_000
    assert_ledger_ok()


@pytest.mark.parametrize("app_overrides", [{"WECHAT_PAY_SIGN_TYPE": "MD5"}])
def test_md5_orders_are_verified_with_md5(client, fake, rule):
    token, _ = member_login(client, "dave")
    started = start_recharge(client, token, rule_id=rule["id"])
    assert started["pay_params"]["signType"] == "MD5"
    no = started["out_trade_no"]
    assert order_row(no).sign_type == "MD5"
    assert fake.pay(no, client).acknowledged
    assert me(client, token)["balance"]["principal_fen"] == 10_000
    assert_ledger_ok()


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"total_fee": 1}, "amount_mismatch"),
        ({"cash_fee": 1, "total_fee": 100_000}, "amount_mismatch"),
        ({"appid": MP_APPID}, "appid_mismatch"),
        ({"mch_id": "1900000999"}, "mch_id_mismatch"),
        ({"result_code": "FAIL"}, "result_fail"),
    ],
)
def test_a_signed_notification_that_disagrees_with_the_order_credits_nothing(client, fake, rule, overrides, kind):
    token, _ = member_login(client, "eve")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fake.mark_paid(no)
    result = fake.notify_payment(no, client, **overrides)
    assert not result.acknowledged and "FAIL" in result.body
    assert me(client, token)["balance"]["available_fen"] == 0
    assert order_row(no).status == "pending"
    [anomaly] = db.session.scalars(select(RechargeAnomaly)).all()
    assert anomaly.kind == kind and anomaly.out_trade_no == no and "sign" not in anomaly.raw
    assert count_rows("ledger_entry") == 0
    # and the right notification afterwards still credits
    assert fake.notify_payment(no, client).acknowledged
    assert me(client, token)["balance"]["available_fen"] == 11_000
    assert_ledger_ok()


def test_unknown_order_and_bad_signature(client, fake, rule, admin):
    token, _ = member_login(client, "frank")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    fake.mark_paid(no)
    # a correctly signed notification for an order we never placed
    fields = parse_xml(fake.payment_notification(no))
    assert fields is not None
    fields["out_trade_no"] = "R0000000000000000000000000"
    xml = signed_pay_xml(fields, fake.settings.pay_api_key, "HMAC-SHA256")
    result = client.post("/wechat/pay/notify", data=xml.encode(), content_type="text/xml")
    assert "FAIL" in result.get_data(as_text=True)
    # a bad signature (WeChat's probes, or a forgery)
    forged = fake.notify_payment(no, client, sign="0" * 64)
    assert not forged.acknowledged and "签名错误" in forged.body
    # garbage
    junk = client.post("/wechat/pay/notify", data=b"<xml><a>", content_type="text/xml")
    assert junk.status_code == 200 and "FAIL" in junk.get_data(as_text=True)
    # a signature that is not even ASCII (it made hmac.compare_digest raise: a 500 for anyone)
    odd = f"<xml><out_trade_no>{no}</out_trade_no><sign>é</sign></xml>".encode()
    odd_answer = client.post("/wechat/pay/notify", data=odd, content_type="text/xml")
    assert odd_answer.status_code == 200 and "签名错误" in odd_answer.get_data(as_text=True)
    assert me(client, token)["balance"]["available_fen"] == 0
    kinds = [a["kind"] for a in admin("GET", "/admin/api/recharge-anomalies")["items"]]
    assert kinds == ["unknown_order"]  # a bad signature is refused and logged, not stored
    assert_ledger_ok()


def test_principal_cap_is_checked_before_paying(client, fake, admin, make_member):
    big = admin("POST", "/admin/api/rules", {"name": "充4000", "amount_fen": 400_000}, 201)
    token, member_id = member_login(client, "gina")
    first = start_recharge(client, token, rule_id=big["id"])
    assert fake.pay(first["out_trade_no"], client).acknowledged
    refused = start_recharge(client, token, status=409, rule_id=big["id"])
    assert refused["error"]["code"] == "balance_cap_exceeded"
    assert refused["error"]["details"]["max_recharge_fen"] == 100_000
    assert len(fake.calls_to("pay/unifiedorder")) == 1
    assert_ledger_ok()


def test_coupon_stock_running_out_mid_way(client, fake, admin):
    template = admin(
        "POST",
        "/admin/api/coupon-templates",
        {"name": "满50减10", "kind": "threshold", "value": 1_000, "threshold_fen": 5_000, "stock": 3},
        201,
    )
    rule = admin(
        "POST",
        "/admin/api/rules",
        {
            "name": "充200送30",
            "amount_fen": 20_000,
            "bonus_fen": 3_000,
            "coupon_template_id": template["id"],
            "coupon_qty": 2,
        },
        201,
    )
    assert rule["rewards"] == ["赠送 30.00 元", "赠送 满50减10券 × 2"]
    outcomes = []
    for name in ("h1", "h2"):
        token, _ = member_login(client, name)
        no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
        assert fake.pay(no, client).acknowledged
        outcomes.append(client.get(f"/api/recharges/{no}", headers=bearer(token)).get_json())
        assert me(client, token)["balance"]["available_fen"] == 23_000  # the recharge always succeeds
    assert (outcomes[0]["coupons_granted"], outcomes[0]["coupons_lapsed"]) == (2, 0)
    assert (outcomes[1]["coupons_granted"], outcomes[1]["coupons_lapsed"]) == (0, 2)
    assert "库存不足" in outcomes[1]["reward_note"]
    assert count_rows("coupon") == 2
    [row] = admin("GET", "/admin/api/recharge-stats?group_by=rule")["items"]
    assert (row["coupons_granted"], row["coupons_lapsed"], row["members"]) == (2, 2, 2)
    assert admin("GET", "/admin/api/coupon-templates")["items"][0]["stock"] == 1
    assert {c.member_id for c in db.session.scalars(select(Coupon))} and count_rows("coupon") == 2
    assert_ledger_ok()


def test_card_gift_only_for_non_members(client, fake, admin, card_types):
    rule = admin(
        "POST",
        "/admin/api/rules",
        {
            "name": "充500送金卡",
            "amount_fen": 50_000,
            "bonus_fen": 8_000,
            "card_type_id": card_types["gold"],
            "card_only_non_members": True,
        },
        201,
    )
    token, _ = member_login(client, "ivy")
    first = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    assert fake.pay(first, client).acknowledged
    assert me(client, token)["level"]["name"] == "金卡"
    second = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    assert fake.pay(second, client).acknowledged
    status = client.get(f"/api/recharges/{second}", headers=bearer(token)).get_json()
    assert status["card_outcome"] == "lapsed_holder" and "仅限新会员" in status["reward_note"]
    assert me(client, token)["balance"]["available_fen"] == 116_000
    assert count_rows("member_card") == 1
    assert_ledger_ok()


def test_editing_a_rule_never_changes_an_order_placed_under_it(client, fake, rule, admin):
    token, _ = member_login(client, "jack")
    no = start_recharge(client, token, rule_id=rule["id"])["out_trade_no"]
    admin("PATCH", f"/admin/api/rules/{rule['id']}", {"bonus_fen": 5_000, "points": 0})
    assert fake.pay(no, client).acknowledged
    assert me(client, token)["balance"]["bonus_fen"] == 1_000 and me(client, token)["points"] == 100
    assert_ledger_ok()


def test_h5_member_pays_through_the_official_account_appid(client, fake, rule):
    # given a member who logged in through official-account OAuth (session cookie)
    response = client.get("/wechat/oauth", query_string={"next": f"/r/{rule['code']}"})
    state = response.location.split("state=")[1].split("&")[0].split("#")[0]
    back = client.get("/wechat/oauth/callback", query_string={"code": "sandbox-h5user", "state": state})
    assert back.status_code == 302 and back.location == f"/r/{rule['code']}"
    # when the H5 page orders
    response = client.post("/api/recharges", json={"rule_id": rule["id"], "src": "broadcast-11"})
    assert response.status_code == 201, response.get_data(as_text=True)
    no = response.get_json()["out_trade_no"]
    # then WeChat Pay was asked for the official account's appid and the member's openid there
    [unified] = fake.calls_to("pay/unifiedorder")
    assert unified.xml["appid"] == MP_APPID and unified.xml["openid"] == "h5user"
    assert order_row(no).appid == MP_APPID
    assert fake.pay(no, client).acknowledged
    assert client.get("/api/me").get_json()["balance"]["available_fen"] == 11_000
    assert_ledger_ok()


def test_bad_recharge_requests_get_stable_codes(client, fake, rule, admin):
    token, _ = member_login(client, "kim")
    cases = [
        ({}, 400, "rule_or_amount_required"),
        ({"rule_id": 999_999}, 404, "rule_not_found"),
        ({"rule_id": "1"}, 400, "invalid_request"),
        ({"rule_id": rule["id"], "amount_fen": 100}, 400, "rule_or_amount_required"),
        ({"amount_fen": 10_000}, 409, "free_amount_disabled"),
        ({"amount_fen": 1.5}, 400, "invalid_request"),
        ({"rule_id": rule["id"], "store": "nope"}, 404, "store_not_found"),
        ({"rule_id": rule["id"], "src": "bad tag!"}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        response = client.post("/api/recharges", json=body, headers=bearer(token))
        assert (response.status_code, error_of(response)["code"]) == (status, code), body
    assert client.post("/api/recharges", json={"rule_id": rule["id"]}).status_code == 401
    admin("POST", f"/admin/api/rules/{rule['id']}/archive")
    response = client.post("/api/recharges", json={"rule_id": rule["id"]}, headers=bearer(token))
    assert error_of(response)["code"] == "rule_archived"
    assert client.get("/api/rules").get_json()["items"] == []
    assert fake.calls_to("pay/unifiedorder") == []
    assert_ledger_ok()


def test_free_amount_within_bounds_with_rewards_only_on_an_exact_rule(client, fake, rule, admin):
    admin(
        "PUT",
        "/admin/api/recharge-settings",
        {"free_amount_enabled": True, "free_min_fen": 1_000, "free_max_fen": 50_000},
    )
    token, _ = member_login(client, "lee")
    low = client.post("/api/recharges", json={"amount_fen": 999}, headers=bearer(token))
    assert error_of(low)["code"] == "amount_out_of_range"
    plain = start_recharge(client, token, amount_fen=12_345)["out_trade_no"]
    exact = start_recharge(client, token, amount_fen=10_000)["out_trade_no"]
    assert fake.pay(plain, client).acknowledged and fake.pay(exact, client).acknowledged
    body = me(client, token)
    assert body["balance"]["principal_fen"] == 22_345 and body["balance"]["bonus_fen"] == 1_000
    assert body["points"] == 100
    assert_ledger_ok()
