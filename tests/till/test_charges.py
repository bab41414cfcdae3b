"""Charges through the open API: by card, phone or payment code, the split by bucket, idempotent
retries, the merchant's order number, store scope, frozen cards, lookups and queries."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mp_backend.extensions import db
from tests.conftest import assert_ledger_ok, count_rows
from tests.till.conftest import balance_of
from tests.web.conftest import bearer, error_of


def test_charge_by_card_takes_the_split_and_answers_the_balance(till, member):
    # when the till charges 10.00 by card number
    body = till.charge({"card_no": member["card_no"]}, 1_000, "A-1", status=201).get_json()
    # then the proportional split is answered (3:1 principal:bonus) with the balance after
    assert body["member_id"] == member["id"] and body["amount_fen"] == 1_000
    assert (body["principal_fen"], body["bonus_fen"]) == (750, 250)
    assert body["balance"] == {"principal_fen": 29_250, "bonus_fen": 9_750, "held_fen": 0, "available_fen": 39_000}
    assert body["order_no"] == "A-1" and body["store_code"] == "sh01" and body["charge_id"] > 0
    assert balance_of(member["id"]) == (29_250, 9_750, 0)
    # and the ledger row names the store, the client and the order
    row = db.session.execute(
        text("SELECT kind, reference, operator, store_id FROM ledger_entry ORDER BY id DESC")
    ).first()
    assert row[0] == "debit" and row[1] == "A-1" and row[2] == f"open:{till.client_id}" and row[3] is not None
    assert_ledger_ok()


def test_charge_by_phone(till, member):
    till.charge({"phone": member["phone"]}, 400, "P-1", status=201)
    assert sum(balance_of(member["id"])) == 39_600


def test_same_key_twice_is_one_charge_with_the_same_answer(till, member):
    # given a charge that went through
    first = till.charge({"card_no": member["card_no"]}, 1_000, "R-1", key="retry-1", status=201)
    rows = count_rows("ledger_entry")
    # when the till retries it (a lost answer) with the same key and body, reordered
    again = till.post(
        "/open/api/v1/charges",
        {"store_code": "sh01", "order_no": "R-1", "amount_fen": 1_000, "member": {"card_no": member["card_no"]}},
        key="retry-1",
    )
    # then the same answer comes back, marked as a replay, and nothing moved again
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_rows("ledger_entry") == rows and count_rows("till_charge") == 1
    assert balance_of(member["id"]) == (29_250, 9_750, 0)
    assert_ledger_ok()


def test_same_key_with_another_body_is_a_conflict(till, member):
    till.charge({"card_no": member["card_no"]}, 1_000, "C-1", key="k-c", status=201)
    response = till.charge({"card_no": member["card_no"]}, 2_000, "C-1", key="k-c")
    assert response.status_code == 409 and error_of(response)["code"] == "idempotency_conflict"
    assert sum(balance_of(member["id"])) == 39_000


def test_keys_are_per_client(till, member, client):
    from tests.till.conftest import new_till

    other = new_till(client, "网店")
    till.charge({"card_no": member["card_no"]}, 1_000, "K-1", key="shared", status=201)
    other.charge({"card_no": member["card_no"]}, 1_000, "K-1", key="shared", status=201)
    assert sum(balance_of(member["id"])) == 38_000
    assert_ledger_ok()


def test_an_order_number_is_charged_once_per_client(till, member):
    till.charge({"card_no": member["card_no"]}, 1_000, "O-1", status=201)
    response = till.charge({"card_no": member["card_no"]}, 1_000, "O-1")
    assert response.status_code == 409 and error_of(response)["code"] == "order_no_taken"
    assert sum(balance_of(member["id"])) == 39_000
    assert count_rows("ledger_entry") == 3
    assert_ledger_ok()


def test_a_missing_idempotency_key_is_refused(till, member):
    response = till.charge({"card_no": member["card_no"]}, 1_000, "I-1", headers={"Idempotency-Key": ""})
    assert response.status_code == 400 and error_of(response)["code"] == "idempotency_key_required"
    assert sum(balance_of(member["id"])) == 40_000


def body_with(member=None, amount_fen=100, order_no="B", store_code="sh01"):  # type: ignore[no-untyped-def]
    member = {"card_no": "x"} if member is None else member
    return {"member": member, "amount_fen": amount_fen, "order_no": order_no, "store_code": store_code}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (body_with({}), 400, "member_identifier_required"),
        (body_with({"card_no": "1", "phone": "2"}), 400, "member_identifier_required"),
        (body_with(amount_fen=0), 400, "invalid_request"),
        (body_with(amount_fen=1.5), 400, "invalid_request"),
        (body_with(amount_fen="100"), 400, "invalid_request"),
        (body_with(amount_fen=True), 400, "invalid_request"),
        (body_with(order_no=""), 400, "invalid_request"),
        (body_with(order_no="x" * 65), 400, "invalid_request"),
        (body_with({"card_no": "nobody"}), 404, "member_not_found"),
        (body_with(store_code="zz99"), 404, "store_not_found"),
        (body_with({"pay_code": "12"}), 400, "invalid_request"),
        (body_with({"pay_code": "680000000000000000"}), 404, "pay_code_invalid"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(till, member, body, status, code):
    response = till.post("/open/api/v1/charges", body)
    assert response.status_code == status, response.get_data(as_text=True)
    assert error_of(response)["code"] == code
    assert sum(balance_of(member["id"])) == 40_000 and count_rows("till_charge") == 0


def test_more_than_the_balance_is_refused(till, member):
    response = till.charge({"card_no": member["card_no"]}, 40_001, "X-1")
    assert response.status_code == 409 and error_of(response)["code"] == "insufficient_balance"
    assert count_rows("till_charge") == 0 and count_rows("open_request") == 0
    # and the same key can be used again once the till has a charge that fits
    till.charge({"card_no": member["card_no"]}, 40_000, "X-1", status=201)


@pytest.mark.parametrize("status", ["frozen", "lost"])
def test_a_frozen_or_lost_card_cannot_pay(till, member, org, status):
    from mp_backend.members import service as members

    members.set_status(member["id"], status, staff_id=org["staff"]["admin"], reason="挂失")
    db.session.commit()
    for path in ("/open/api/v1/charges", "/open/api/v1/holds"):
        body = {"member": {"card_no": member["card_no"]}, "amount_fen": 100, "order_no": "F-1", "store_code": "sh01"}
        response = till.post(path, body)
        assert response.status_code == 409 and error_of(response)["code"] == "member_frozen"
    assert balance_of(member["id"]) == (30_000, 10_000, 0)


def test_a_store_client_acts_in_its_store_only(sh01_till, member):
    # given a client created with --store sh01
    # when it charges in another store
    response = sh01_till.charge({"card_no": member["card_no"]}, 100, "S-1", store_code="sh02")
    # then it is refused, and in its own store it is accepted
    assert response.status_code == 403 and error_of(response)["code"] == "store_out_of_scope"
    hold = sh01_till.hold({"card_no": member["card_no"]}, 100, "S-2", store_code="bj01")
    assert hold.status_code == 403 and error_of(hold)["code"] == "store_out_of_scope"
    sh01_till.charge({"card_no": member["card_no"]}, 100, "S-1", store_code="sh01", status=201)
    assert sum(balance_of(member["id"])) == 39_900


def test_lookup_masks_the_member_and_shows_the_level_and_balance(till, member):
    from mp_backend.members.cards import ensure_card_type, grant_card

    gold = ensure_card_type("gold", "金卡", rank=2, discount_percent=95)
    grant_card(member["id"], gold.id, only_non_members=False, source="test", reference="t")
    db.session.commit()
    for query in (f"card_no={member['card_no']}", f"phone={member['phone']}"):
        body = till.get(f"/open/api/v1/members?{query}", status=200).get_json()
        assert body["member_id"] == member["id"]
        assert body["name"] == "王**" and body["phone"] == "138****8000"
        assert body["card"]["card_no"].endswith(member["card_no"][-4:]) and body["card"]["card_no"].startswith("****")
        assert body["card"]["level"] == "金卡" and body["card"]["discount_percent"] == 95
        assert body["balance"]["available_fen"] == 40_000
    # the open API charges what the till sends: the discount is the till's to apply
    till.charge({"card_no": member["card_no"]}, 1_000, "D-1", status=201)
    assert sum(balance_of(member["id"])) == 39_000


def test_lookup_errors(till, member):
    missing = till.get("/open/api/v1/members?phone=13900000000")
    assert missing.status_code == 404 and error_of(missing)["code"] == "member_not_found"
    none = till.get("/open/api/v1/members")
    assert none.status_code == 400 and error_of(none)["code"] == "member_identifier_required"


def test_query_by_order_number(till, member, client):
    from tests.till.conftest import new_till

    charge = till.charge({"card_no": member["card_no"]}, 1_000, "Q-1", status=201).get_json()
    till.post("/open/api/v1/refunds", {"charge_id": charge["charge_id"], "amount_fen": 300}, status=201)
    items = till.get("/open/api/v1/charges?order_no=Q-1", status=200).get_json()["items"]
    assert len(items) == 1
    item = items[0]
    assert item["charge_id"] == charge["charge_id"] and item["status"] == "paid" and item["store_code"] == "sh01"
    assert (item["paid_fen"], item["refunded_fen"], item["refundable_fen"]) == (1_000, 300, 700)
    assert [r["amount_fen"] for r in item["refunds"]] == [300]
    # another client does not see it
    other = new_till(client, "网店")
    assert other.get("/open/api/v1/charges?order_no=Q-1", status=200).get_json() == {"items": []}
    assert till.get("/open/api/v1/charges?order_no=nothing", status=200).get_json() == {"items": []}


def test_the_member_token_does_not_open_the_till_api(client, member, wxa_login):
    token = wxa_login("alice")["token"]
    response = client.get(f"/open/api/v1/members?card_no={member['card_no']}", headers=bearer(token))
    assert response.status_code == 401 and error_of(response)["code"] == "signature_missing"
