"""The pay password: five wrong tries lock balance payment for 30 minutes (counted in the database),
change needs the old one, reset re-verifies through a fresh WeChat login code."""

from __future__ import annotations

import time_machine

from mp_backend.models_base import utcnow
from tests.conftest import assert_ledger_ok, count_rows
from tests.spending.helpers import PASSWORD, balance, bearer, error_of, pay


def test_five_wrong_tries_lock_for_thirty_minutes(client, payer):
    token, _ = payer("gus", principal_fen=5_000)
    # four wrong tries: refused, each says how many are left
    for left in (4, 3, 2, 1):
        error = pay(client, token, "SO-1", 100, password="111222", status=403)
        assert error["code"] == "wrong_pay_password" and f"{left} 次" in error["message"]
    # the fifth locks balance payment
    locked = pay(client, token, "SO-1", 100, password="111222", status=423)
    assert locked["code"] == "pay_password_locked"
    # now even the right password is refused, with the unlock time
    response = client.post(
        "/api/payments",
        json={"order_no": "SO-1", "amount_fen": 100, "pay_password": PASSWORD, "request_id": "x"},
        headers=bearer(token),
    )
    assert response.status_code == 423 and error_of(response)["code"] == "pay_password_locked"
    assert response.get_json()["error"]["details"]["locked_until"]
    assert count_rows("order_payment") == 0
    with time_machine.travel(utcnow().timestamp() + 29 * 60, tick=False):
        assert pay(client, token, "SO-1", 100, status=423)["code"] == "pay_password_locked"
    # after 30 minutes the right password pays, and the count starts again
    with time_machine.travel(utcnow().timestamp() + 31 * 60, tick=False):
        assert pay(client, token, "SO-1", 100)["status"] == "paid"
        assert "4 次" in pay(client, token, "SO-2", 100, password="111222", status=403)["message"]
    assert balance(client, token)["available_fen"] == 4_900
    assert_ledger_ok()


def test_set_change_and_reset(client, payer, fake):
    token, _ = payer("hal", principal_fen=1_000, password=None)
    headers = bearer(token)
    assert client.get("/api/me/pay-password", headers=headers).get_json() == {"is_set": False}
    assert pay(client, token, "SO-1", 100, status=409)["code"] == "pay_password_not_set"
    for bad in ("12345", "1234567", "abcdef", "111111", "123456"):
        response = client.post("/api/me/pay-password", json={"pay_password": bad}, headers=headers)
        assert response.status_code == 400, bad
    assert client.post("/api/me/pay-password", json={"pay_password": "802413"}, headers=headers).status_code == 201
    again = client.post("/api/me/pay-password", json={"pay_password": "902413"}, headers=headers)
    assert again.status_code == 409 and error_of(again)["code"] == "pay_password_already_set"
    # change: the old one is needed, a wrong old one counts as a wrong try
    wrong = client.put(
        "/api/me/pay-password", json={"old_pay_password": "000111", "new_pay_password": "902413"}, headers=headers
    )
    assert wrong.status_code == 403 and error_of(wrong)["code"] == "wrong_pay_password"
    ok = client.put(
        "/api/me/pay-password", json={"old_pay_password": "802413", "new_pay_password": "902413"}, headers=headers
    )
    assert ok.status_code == 200
    # lock it, then reset through WeChat: someone else's login code does not do
    for _ in range(5):
        pay(client, token, "SO-1", 100, password="000111", status=423 if _ == 4 else 403)
    other = client.post(
        "/api/me/pay-password/reset", json={"code": "sandbox-mallory", "new_pay_password": "705813"}, headers=headers
    )
    assert other.status_code == 403 and error_of(other)["code"] == "wechat_reverify_failed"
    reset = client.post(
        "/api/me/pay-password/reset", json={"code": "sandbox-hal", "new_pay_password": "705813"}, headers=headers
    )
    assert reset.status_code == 200, reset.get_data(as_text=True)
    assert pay(client, token, "SO-1", 100, password="705813")["status"] == "paid"
    assert_ledger_ok()
