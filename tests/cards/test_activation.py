"""In-house activation (mini program and H5): phone, name, birthday; a card number with a check digit;
a phone of another member is 409 and changes nothing, also when two members race for it."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest

from mp_backend.extensions import db
from mp_backend.members import activation
from mp_backend.members.models import Member
from mp_backend.members.service import _new_card_no
from tests.conftest import MYSQL, assert_ledger_ok
from tests.web.conftest import error_of, member_row

from .conftest import bearer

ALICE = {"phone": "13800138000", "name": "王小美", "birthday": "1990-05-17"}


def test_luhn_check_digit_catches_a_mistyped_or_swapped_digit():
    number = _new_card_no()
    assert len(number) == 12 and number.startswith("8") and activation.card_no_valid(number)
    assert activation.luhn_digit("7992739871") == "3"  # the textbook example
    assert activation.card_no_valid("800000000003") and not activation.card_no_valid("800000000001")
    for i in range(11):
        typo = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
        assert not activation.card_no_valid(typo)
        swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
        if swapped != number and {number[i], number[i + 1]} != {"0", "9"}:  # Luhn's one blind spot
            assert not activation.card_no_valid(swapped)


def test_activation_issues_a_card_number_and_a_retry_answers_the_same(client, wxa_login):
    login = wxa_login("o-alice")
    headers = bearer(login["token"])
    response = client.post("/api/me/activate", json=ALICE, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert activation.card_no_valid(body["card_no"]) and body["replayed"] is False
    assert body["member"]["phone"] == "13800138000" and body["member"]["name"] == "王小美"
    assert body["birthday"] == "1990-05-17" and body["activated_at"]
    # the same request again (a retry): the same answer, nothing changed
    again = client.post("/api/me/activate", json={**ALICE, "phone": "138-0013-8000"}, headers=headers).get_json()
    assert again["replayed"] is True and again["card_no"] == body["card_no"]
    assert again["activated_at"] == body["activated_at"]
    # other details for an activated card
    other = client.post("/api/me/activate", json={**ALICE, "name": "王大美"}, headers=headers)
    assert other.status_code == 409 and error_of(other)["code"] == "already_activated"
    me = client.get("/api/me", headers=headers).get_json()
    assert me["card_no"] == body["card_no"] and me["name"] == "王小美"


def test_a_card_number_without_check_digit_is_replaced_on_activation(client, wxa_login):
    login = wxa_login("o-legacy")
    member = db.session.get(Member, login["member"]["id"])
    member.card_no = "812345678901"  # issued before check digits (its last digit is no Luhn digit)
    db.session.commit()
    assert not activation.card_no_valid("812345678901")
    body = client.post("/api/me/activate", json=ALICE, headers=bearer(login["token"])).get_json()
    assert activation.card_no_valid(body["card_no"]) and body["card_no"] != "812345678901"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("phone", "1380013800", "invalid_phone"),
        ("phone", "23800138000", "invalid_phone"),
        ("phone", "１３８００１３８０００", "invalid_phone"),  # full-width digits
        ("phone", "", "invalid_phone"),
        ("name", "   ", "invalid_name"),
        ("name", "王\n小美", "invalid_name"),
        ("name", "1234", "invalid_name"),
        ("name", "x" * 33, "invalid_name"),
        ("birthday", "1990-02-30", "invalid_birthday"),
        ("birthday", "17/05/1990", "invalid_birthday"),
        ("birthday", "1899-12-31", "invalid_birthday"),
        ("birthday", (date.today() + timedelta(days=2)).isoformat(), "invalid_birthday"),
    ],
)
def test_bad_details_are_refused_clearly_and_change_nothing(client, wxa_login, field, value, code):
    login = wxa_login("o-bad")
    response = client.post("/api/me/activate", json={**ALICE, field: value}, headers=bearer(login["token"]))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code and error["message"]
    member = member_row(login["member"]["id"])
    assert member.activated_at is None and member.phone is None and member.name == "" and member.birthday is None
    assert member.card_no == login["member"]["card_no"]


def test_missing_fields_and_no_login(client, wxa_login):
    assert client.post("/api/me/activate", json=ALICE).status_code == 401
    login = wxa_login("o-missing")
    response = client.post("/api/me/activate", json={"phone": "13800138000"}, headers=bearer(login["token"]))
    assert response.status_code == 400 and error_of(response)["code"]


def test_a_phone_of_another_member_is_409_and_nothing_changes(client, wxa_login):
    alice, bob = wxa_login("o-alice"), wxa_login("o-bob")
    assert client.post("/api/me/activate", json=ALICE, headers=bearer(alice["token"])).status_code == 200
    response = client.post("/api/me/activate", json={**ALICE, "name": "李四"}, headers=bearer(bob["token"]))
    assert response.status_code == 409
    assert error_of(response) == {"code": "phone_taken", "message": "该手机号已绑定其他会员"}
    member = member_row(bob["member"]["id"])
    assert member.activated_at is None and member.phone is None and member.name == ""
    assert member_row(alice["member"]["id"]).phone == "13800138000"
    assert_ledger_ok()


@pytest.mark.skipif(not MYSQL, reason="the race needs MariaDB's row locks (SQLite serialises writers)")
def test_two_members_activating_one_phone_at_once_one_wins_by_the_unique_key(app, make_member):
    from mp_backend.transaction import transactional

    first, second = make_member(), make_member()
    first_flushed, results = threading.Event(), {}

    @transactional
    def activate_and_wait(member_id: int) -> None:
        activation.activate(member_id, **ALICE)  # written, not yet committed
        first_flushed.set()
        time.sleep(0.5)  # the second member's activation reads "nobody has it" and waits on the index

    def run(name: str, member_id: int, slow: bool) -> None:
        with app.app_context():
            try:
                if slow:
                    activate_and_wait(member_id)
                else:
                    first_flushed.wait(5)
                    activation.activate(member_id, **ALICE)
                results[name] = "ok"
            except activation.PhoneTaken as error:
                results[name] = error.code
            finally:
                db.session.remove()

    threads = [
        threading.Thread(target=run, args=("first", first, True)),
        threading.Thread(target=run, args=("second", second, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == {"first": "ok", "second": "phone_taken"}
    db.session.rollback()
    assert db.session.get(Member, first).phone == "13800138000"
    loser = db.session.get(Member, second)
    assert loser.phone is None and loser.activated_at is None and loser.name == ""
    assert_ledger_ok()
