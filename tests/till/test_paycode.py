"""The member's payment code: shown by GET /api/me/pay-code, charged once by a till, about a minute."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import text

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from tests.conftest import assert_ledger_ok, count_rows
from tests.till.conftest import balance_of
from tests.web.conftest import bearer, error_of


def logged_in_member(client, wxa_login, principal_fen=10_000):  # type: ignore[no-untyped-def]
    login = wxa_login("payer")
    member_id = login["member"]["id"]
    ledger.credit(member_id, principal_fen, key=f"fund-{member_id}", operator="test")
    db.session.commit()
    return login["token"], member_id


def pay_code(client, token):  # type: ignore[no-untyped-def]
    response = client.get("/api/me/pay-code", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_a_code_is_18_digits_for_about_a_minute_and_not_stored_in_clear(client, wxa_login, org):
    token, _ = logged_in_member(client, wxa_login)
    body = pay_code(client, token)
    assert len(body["code"]) == 18 and body["code"].isdigit()
    assert 30 <= body["expires_in"] <= 120
    stored = db.session.execute(text("SELECT code_hash FROM pay_code")).scalar_one()
    assert body["code"] not in stored
    assert client.get("/api/me/pay-code").status_code == 401


def test_the_code_as_a_qr_svg_on_request(client, wxa_login, org):
    token, _ = logged_in_member(client, wxa_login)
    # by default, no image (the mini program draws its own)
    assert "qr_svg" not in pay_code(client, token)
    # ?qr=svg: an SVG of the same answer's code (the browser test decodes it), which it replaces
    answer = client.get("/api/me/pay-code?qr=svg", headers=bearer(token))
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    assert body["qr_svg"].lstrip().startswith("<?xml") and "<svg" in body["qr_svg"] and "<script" not in body["qr_svg"]
    stored = db.session.execute(text("SELECT code_hash FROM pay_code")).scalar_one()
    assert stored == hashlib.sha256(body["code"].encode()).hexdigest()
    # another format is refused
    refused = client.get("/api/me/pay-code?qr=png", headers=bearer(token))
    assert refused.status_code == 400 and error_of(refused)["code"] == "invalid_request"


def test_a_code_pays_once(client, wxa_login, till):
    token, member_id = logged_in_member(client, wxa_login)
    code = pay_code(client, token)["code"]
    # a lookup shows the member without using the code up
    looked = till.get(f"/open/api/v1/members?pay_code={code}", status=200).get_json()
    assert looked["member_id"] == member_id
    # the charge uses it
    till.charge({"pay_code": code}, 1_500, "PC-1", status=201)
    # a second charge with it (another order) is refused as used, and so is a lookup
    again = till.charge({"pay_code": code}, 1_500, "PC-2")
    assert again.status_code == 409 and error_of(again)["code"] == "pay_code_used"
    look = till.get(f"/open/api/v1/members?pay_code={code}")
    assert look.status_code == 409 and error_of(look)["code"] == "pay_code_used"
    assert balance_of(member_id) == (8_500, 0, 0)
    assert_ledger_ok()


def test_a_retry_of_the_same_charge_is_answered_although_the_code_is_used(client, wxa_login, till):
    token, member_id = logged_in_member(client, wxa_login)
    code = pay_code(client, token)["code"]
    first = till.charge({"pay_code": code}, 1_500, "PC-3", key="pc-retry", status=201)
    again = till.charge({"pay_code": code}, 1_500, "PC-3", key="pc-retry", status=201)
    assert again.get_json() == first.get_json()
    assert balance_of(member_id) == (8_500, 0, 0)


def test_a_failed_charge_leaves_the_code_usable(client, wxa_login, till):
    token, member_id = logged_in_member(client, wxa_login)
    code = pay_code(client, token)["code"]
    too_much = till.charge({"pay_code": code}, 10_001, "PC-4")
    assert too_much.status_code == 409 and error_of(too_much)["code"] == "insufficient_balance"
    till.charge({"pay_code": code}, 10_000, "PC-4", status=201)
    assert balance_of(member_id) == (0, 0, 0)


def test_an_expired_code_is_refused(client, wxa_login, till):
    token, member_id = logged_in_member(client, wxa_login)
    body = pay_code(client, token)
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=body["expires_in"] + 1), tick=False):
        response = till.charge({"pay_code": body["code"]}, 100, "PC-5", headers={})
        look = till.get(f"/open/api/v1/members?pay_code={body['code']}")
    assert response.status_code == 409 and error_of(response)["code"] == "pay_code_expired"
    assert look.status_code == 409 and error_of(look)["code"] == "pay_code_expired"
    assert balance_of(member_id) == (10_000, 0, 0)
    # just before expiry it still pays
    fresh = pay_code(client, token)
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=fresh["expires_in"] - 5), tick=False):
        till.charge({"pay_code": fresh["code"]}, 100, "PC-6", status=201)


def test_a_new_code_replaces_the_old(client, wxa_login, till):
    token, member_id = logged_in_member(client, wxa_login)
    old = pay_code(client, token)["code"]
    new = pay_code(client, token)["code"]
    assert old != new
    response = till.charge({"pay_code": old}, 100, "PC-7")
    assert response.status_code == 404 and error_of(response)["code"] == "pay_code_invalid"
    till.charge({"pay_code": new}, 100, "PC-7", status=201)
    assert count_rows("pay_code") == 1


def test_a_frozen_member_gets_no_code_and_an_issued_code_cannot_pay(client, wxa_login, till, org):
    from mp_backend.members import service as members

    token, member_id = logged_in_member(client, wxa_login)
    code = pay_code(client, token)["code"]
    members.set_status(member_id, "lost", staff_id=org["staff"]["admin"], reason="挂失")
    db.session.commit()
    refused = client.get("/api/me/pay-code", headers=bearer(token))
    assert refused.status_code == 409 and error_of(refused)["code"] == "member_frozen"
    response = till.charge({"pay_code": code}, 100, "PC-8")
    assert response.status_code == 409 and error_of(response)["code"] == "member_frozen"
    assert balance_of(member_id) == (10_000, 0, 0)
