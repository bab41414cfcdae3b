"""Refunds (partial, repeated, never above the charge) and holds (capture, void, and what may not follow)."""

from __future__ import annotations

from tests.conftest import assert_ledger_ok, count_rows
from tests.till.conftest import balance_of, new_till
from tests.web.conftest import error_of


def refund(till, charge_id, amount_fen, **kwargs):  # type: ignore[no-untyped-def]
    return till.post("/open/api/v1/refunds", {"charge_id": charge_id, "amount_fen": amount_fen}, **kwargs)


def test_partial_and_repeated_refunds_never_above_the_charge(till, member):
    # given a charge of 10.00 that took 7.50 principal and 2.50 bonus
    charge = till.charge({"card_no": member["card_no"]}, 1_000, "RF-1", status=201).get_json()
    cid = charge["charge_id"]
    # when it is refunded 4.00, then 5.00
    first = refund(till, cid, 400, status=201).get_json()
    second = refund(till, cid, 500, status=201).get_json()
    # then each restores the buckets in proportion, and says what is left
    assert (first["principal_fen"], first["bonus_fen"], first["refunded_fen"], first["refundable_fen"]) == (
        300,
        100,
        400,
        600,
    )
    assert second["refunded_fen"] == 900 and second["refundable_fen"] == 100
    assert first["principal_fen"] + second["principal_fen"] <= 750
    # and 2.00 more is refused (only 1.00 left), while the last 1.00 goes through to the exact remainder
    over = refund(till, cid, 200)
    assert over.status_code == 409 and error_of(over)["code"] == "refund_exceeds_payment"
    last = refund(till, cid, 100, status=201).get_json()
    assert last["refundable_fen"] == 0
    assert balance_of(member["id"]) == (30_000, 10_000, 0)
    again = refund(till, cid, 1)
    assert again.status_code == 409 and error_of(again)["code"] == "refund_exceeds_payment"
    assert count_rows("till_refund") == 3
    assert_ledger_ok()


def test_a_refund_retried_with_its_key_refunds_once(till, member):
    cid = till.charge({"card_no": member["card_no"]}, 1_000, "RF-2", status=201).get_json()["charge_id"]
    first = refund(till, cid, 600, key="refund-1", status=201)
    again = refund(till, cid, 600, key="refund-1", status=201)
    assert again.get_json() == first.get_json() and again.headers.get("Idempotent-Replayed") == "true"
    assert sum(balance_of(member["id"])) == 39_600
    conflict = refund(till, cid, 100, key="refund-1")
    assert conflict.status_code == 409 and error_of(conflict)["code"] == "idempotency_conflict"
    assert_ledger_ok()


def test_refunds_of_unknown_or_foreign_charges_are_not_found(till, member, client):
    cid = till.charge({"card_no": member["card_no"]}, 1_000, "RF-3", status=201).get_json()["charge_id"]
    other = new_till(client, "网店")
    for who, charge_id in ((other, cid), (till, cid + 1000), (till, 2**63 - 1)):
        response = refund(who, charge_id, 100)
        assert response.status_code == 404 and error_of(response)["code"] == "charge_not_found"
    bad = refund(till, 2**63, 100)
    assert bad.status_code == 400
    assert sum(balance_of(member["id"])) == 39_000


def test_hold_then_partial_capture_then_refund(till, member):
    # given a hold of 20.00
    held = till.hold({"phone": member["phone"]}, 2_000, "H-1", status=201).get_json()
    assert held["status"] == "held" and held["hold_id"] == held["charge_id"]
    assert balance_of(member["id"]) == (28_500, 9_500, 2_000)
    # when 12.00 of it is captured
    captured = till.post(f"/open/api/v1/holds/{held['hold_id']}/capture", {"amount_fen": 1_200}, status=200).get_json()
    # then 12.00 is taken in proportion and 8.00 goes back
    assert captured["status"] == "captured" and captured["amount_fen"] == 1_200 and captured["released_fen"] == 800
    assert (captured["principal_fen"], captured["bonus_fen"]) == (900, 300)
    assert balance_of(member["id"]) == (29_100, 9_700, 0)
    # and the captured amount can be refunded, never more
    over = refund(till, held["hold_id"], 1_201)
    assert over.status_code == 409 and error_of(over)["code"] == "refund_exceeds_payment"
    refund(till, held["hold_id"], 1_200, status=201)
    assert balance_of(member["id"]) == (30_000, 10_000, 0)
    item = till.get("/open/api/v1/charges?order_no=H-1", status=200).get_json()["items"][0]
    assert (item["kind"], item["status"], item["paid_fen"], item["refunded_fen"]) == ("hold", "captured", 1_200, 1_200)
    assert_ledger_ok()


def test_capture_in_full_with_an_empty_body(till, member):
    held = till.hold({"card_no": member["card_no"]}, 2_000, "H-2", status=201).get_json()
    captured = till.post(f"/open/api/v1/holds/{held['hold_id']}/capture", {}, status=200).get_json()
    assert captured["amount_fen"] == 2_000 and captured["released_fen"] == 0
    assert sum(balance_of(member["id"])) == 38_000


def test_void_then_capture_or_refund_is_refused(till, member):
    held = till.hold({"card_no": member["card_no"]}, 2_000, "H-3", status=201).get_json()
    hid = held["hold_id"]
    # a hold not yet captured cannot be refunded
    early = refund(till, hid, 100)
    assert early.status_code == 409 and error_of(early)["code"] == "charge_not_refundable"
    voided = till.post(f"/open/api/v1/holds/{hid}/void", status=200).get_json()
    assert voided["status"] == "voided" and voided["released_fen"] == 2_000
    assert balance_of(member["id"]) == (30_000, 10_000, 0)
    # when the till captures after the void, voids again with a new key, or refunds
    capture = till.post(f"/open/api/v1/holds/{hid}/capture", {"amount_fen": 100})
    again = till.post(f"/open/api/v1/holds/{hid}/void")
    late = refund(till, hid, 100)
    # then each is refused with its own code, and nothing moved
    assert capture.status_code == 409 and error_of(capture)["code"] == "hold_already_settled"
    assert again.status_code == 409 and error_of(again)["code"] == "hold_already_settled"
    assert late.status_code == 409 and error_of(late)["code"] == "charge_not_refundable"
    assert balance_of(member["id"]) == (30_000, 10_000, 0)
    assert_ledger_ok()


def test_capture_more_than_held_and_void_after_capture(till, member):
    hid = till.hold({"card_no": member["card_no"]}, 1_000, "H-4", status=201).get_json()["hold_id"]
    too_much = till.post(f"/open/api/v1/holds/{hid}/capture", {"amount_fen": 1_001})
    assert too_much.status_code == 409 and error_of(too_much)["code"] == "capture_exceeds_hold"
    till.post(f"/open/api/v1/holds/{hid}/capture", {"amount_fen": 1_000}, key="cap-1", status=200)
    replay = till.post(f"/open/api/v1/holds/{hid}/capture", {"amount_fen": 1_000}, key="cap-1", status=200)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    void = till.post(f"/open/api/v1/holds/{hid}/void")
    assert void.status_code == 409 and error_of(void)["code"] == "hold_already_settled"
    assert sum(balance_of(member["id"])) == 39_000
    assert_ledger_ok()


def test_holds_of_others_and_charges_are_not_holds(till, member, client):
    charge = till.charge({"card_no": member["card_no"]}, 1_000, "H-5", status=201).get_json()
    hid = till.hold({"card_no": member["card_no"]}, 1_000, "H-6", status=201).get_json()["hold_id"]
    other = new_till(client, "网店")
    for who, path in (
        (till, f"/open/api/v1/holds/{charge['charge_id']}/capture"),
        (other, f"/open/api/v1/holds/{hid}/capture"),
        (till, "/open/api/v1/holds/999999/capture"),
    ):
        response = who.post(path, {})
        assert response.status_code == 404 and error_of(response)["code"] == "hold_not_found"
    assert balance_of(member["id"]) == (28_500, 9_500, 1_000)
