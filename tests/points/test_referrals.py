"""Referral rewards through HTTP: the code and link, binding and its refusals (self, loops, another
inviter, not a new member, unknown code), the reward only after the first payment, once, and at most the
merchant's number per inviter and month."""

from __future__ import annotations

import time_machine
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.ledger import points
from mp_backend.loyalty.models import Referral
from tests.conftest import assert_ledger_ok, count_rows
from tests.points.test_points import at
from tests.points.test_wiring import set_points
from tests.spending.helpers import pay
from tests.web.conftest import bearer


def code_of(client, token: str) -> dict:  # type: ignore[no-untyped-def]
    response = client.get("/api/me/referral", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def bind(client, token: str, code: str, status: int = 201) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/api/me/referral", json={"code": code}, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def points_of(member_id: int) -> int:
    db.session.rollback()
    return points.balance(member_id)


def test_binding_and_its_refusals_change_nothing(client, admin, payer):
    ann, ann_id = payer("ann", principal_fen=1_000)
    bob, _ = payer("bob", principal_fen=1_000)
    cy, _ = payer("cy", principal_fen=1_000)
    mine = code_of(client, ann)
    assert mine["link"].endswith(f"/member?ref={mine['code']}") and code_of(client, ann)["code"] == mine["code"]
    # the link opens the member centre with the code
    assert client.get(f"/member?ref={mine['code']}").headers["Location"].endswith(f"?ref={mine['code']}")
    # bob binds ann's code (twice: one binding)
    assert bind(client, bob, mine["code"]) == {"inviter_id": ann_id, "status": "bound"}
    assert bind(client, bob, mine["code"].lower()) == {"inviter_id": ann_id, "status": "bound"}
    # refusals, each with its code
    assert bind(client, ann, mine["code"], 409)["error"]["code"] == "referral_self"
    assert bind(client, ann, code_of(client, bob)["code"], 409)["error"]["code"] == "referral_loop"
    assert bind(client, bob, code_of(client, cy)["code"], 409)["error"]["code"] == "referral_already_bound"
    assert bind(client, cy, "NOSUCH99", 404)["error"]["code"] == "referral_code_not_found"
    assert bind(client, cy, "", 400)["error"]["code"]
    pay(client, cy, "SO-C", 100)
    assert bind(client, cy, mine["code"], 409)["error"]["code"] == "referral_not_new_member"
    assert count_rows("referral") == 1
    # a longer loop: cy invited by bob (bob by ann): ann may not take cy's code
    dan, _ = payer("dan", principal_fen=1_000)
    bind(client, dan, code_of(client, bob)["code"])
    assert bind(client, ann, code_of(client, dan)["code"], 409)["error"]["code"] == "referral_loop"
    assert_ledger_ok()


def test_reward_after_the_first_payment_once_and_at_most_n_a_month(client, admin, payer):
    set_points(admin, referral_points=50, referral_monthly_cap=2)
    with time_machine.travel(at("2027-01-31T23:00:00"), tick=False):  # Shanghai time
        ann, ann_id = payer("ann", principal_fen=1_000)
        code = code_of(client, ann)["code"]
        invitees = [payer(name, principal_fen=1_000)[0] for name in ("bea", "cal", "dee", "eve")]
        for token in invitees:
            bind(client, token, code)
        # binding gives nothing
        assert points_of(ann_id) == 0
        # bea's first payment, sent twice, then a second one: one reward
        pay(client, invitees[0], "SO-1", 100, request_id="b-1")
        pay(client, invitees[0], "SO-1", 100, request_id="b-1")
        pay(client, invitees[0], "SO-2", 100)
        assert points_of(ann_id) == 50
        pay(client, invitees[1], "SO-1", 100)
        assert points_of(ann_id) == 100
        # the month's two are given: dee's first payment is recorded as capped, no points
        pay(client, invitees[2], "SO-1", 100)
        assert points_of(ann_id) == 100
    with time_machine.travel(at("2027-02-01T00:00:01"), tick=False):  # a new month in Shanghai
        pay(client, invitees[3], "SO-1", 100)
        assert points_of(ann_id) == 150
        summary = code_of(client, ann)
    db.session.rollback()
    rows = db.session.scalars(select(Referral).order_by(Referral.id)).all()
    assert [(r.status, r.points, r.month) for r in rows] == [
        ("rewarded", 50, "2027-01"),
        ("rewarded", 50, "2027-01"),
        ("capped", 0, "2027-01"),
        ("rewarded", 50, "2027-02"),
    ]
    assert (summary["invited"], summary["rewarded"], summary["points"]) == (4, 3, 150)
    assert_ledger_ok()


def test_a_till_charge_is_a_first_payment_too(client, admin, payer, org):
    from mp_backend.members.models import Member
    from tests.till.conftest import new_till

    set_points(admin, referral_points=20)
    ann, ann_id = payer("ann")
    bea, bea_id = payer("bea", principal_fen=1_000)
    bind(client, bea, code_of(client, ann)["code"])
    db.session.rollback()
    card_no = db.session.get(Member, bea_id).card_no
    till = new_till(client)
    till.charge({"card_no": card_no}, 300, "T-1", key="t-1", status=201)
    till.charge({"card_no": card_no}, 300, "T-1", key="t-1", status=201)
    assert points_of(ann_id) == 20
    assert_ledger_ok()


def test_a_payment_by_wechat_alone_rewards_once_and_then_binding_is_refused(client, fake, admin, payer):
    set_points(admin, referral_points=30)
    ann, ann_id = payer("ann")
    bea, _ = payer("bea")  # no balance: the whole order goes to WeChat Pay
    cal, _ = payer("cal")
    code = code_of(client, ann)["code"]
    bind(client, bea, code)
    no = pay(client, bea, "SO-1", 500)["out_trade_no"]
    assert points_of(ann_id) == 0  # not paid yet
    assert fake.pay(no, client).acknowledged
    assert fake.notify_payment(no, client).acknowledged
    assert points_of(ann_id) == 30
    # cal pays by WeChat alone before binding: not a new member any more
    cal_no = pay(client, cal, "SO-2", 500)["out_trade_no"]
    assert fake.pay(cal_no, client).acknowledged
    assert bind(client, cal, code, 409)["error"]["code"] == "referral_not_new_member"
    assert_ledger_ok()
