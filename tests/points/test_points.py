"""Points lots, expiry at the end of a Shanghai day (the database in UTC), leap days, spending
earliest-expiring first, exchange into bonus balance, redemption limits, adjustments, refunds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import select

from mp_backend.errors import AppError
from mp_backend.extensions import db
from mp_backend.ledger import points
from mp_backend.ledger import service as ledger
from mp_backend.loyalty import service as loyalty
from tests.conftest import assert_ledger_ok
from tests.points.conftest import assert_points_ok

SHANGHAI = "Asia/Shanghai"


def at(text: str) -> datetime:
    """A Shanghai wall-clock time as the aware moment it is."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(SHANGHAI))


def test_a_lot_lasts_to_2359_59_shanghai_and_expires_at_midnight(app, make_member):
    member_id = make_member()
    # given 100 points earned at 00:30 Shanghai on 2026-03-10 (16:30 UTC the day before), valid 2 years
    with time_machine.travel(at("2026-03-10T00:30:00"), tick=False):
        points.award_points(member_id, 100, key="a1", source="test", validity_years=2)
    lot = points.lots_of(member_id, at=datetime(2026, 3, 10))[0]
    # then the lot's expiry is stored in UTC: midnight Shanghai of 2028-03-11 is 16:00 UTC on 2028-03-10
    assert lot.expires_at == datetime(2028, 3, 10, 16, 0)
    assert points.last_valid_day(lot.expires_at).isoformat() == "2028-03-10"
    # when the clock reaches 23:59:59 Shanghai on the last day, the points are still there
    with time_machine.travel(at("2028-03-10T23:59:59"), tick=False):
        assert points.balance(member_id) == 100
        assert loyalty.expire_due() == 0
    # and one second later they are expired, and the job writes one expire entry for the lot
    with time_machine.travel(at("2028-03-11T00:00:00"), tick=False):
        assert points.balance(member_id) == 0
        assert loyalty.expire_due() == 1
        assert loyalty.expire_due() == 0  # a second run finds nothing left
    assert_points_ok()


def test_leap_day_lot_lasts_to_the_last_day_of_february(app, make_member):
    member_id = make_member()
    with time_machine.travel(at("2028-02-29T12:00:00"), tick=False):
        points.award_points(member_id, 50, key="leap", source="test", validity_years=2)
    lot = points.lots_of(member_id, at=datetime(2028, 3, 1))[0]
    assert points.last_valid_day(lot.expires_at).isoformat() == "2030-02-28"
    with time_machine.travel(at("2030-02-28T23:59:59"), tick=False):
        assert points.balance(member_id) == 50
    with time_machine.travel(at("2030-03-01T00:00:00"), tick=False):
        assert points.balance(member_id) == 0
        assert loyalty.expire_due() == 1
    assert_points_ok()


def test_spend_takes_the_earliest_expiring_lot_first_and_is_idempotent(app, make_member):
    member_id = make_member()
    with time_machine.travel(at("2026-01-01T10:00:00"), tick=False):
        points.award_points(member_id, 100, key="late", source="test", validity_years=5)
        points.award_points(member_id, 100, key="early", source="test", validity_years=1)
        first = points.spend_points(member_id, 150, key="s1")
        again = points.spend_points(member_id, 150, key="s1")
        lots = {lot.source: lot for lot in points.lots_of(member_id)}
    assert first.points == 150 and first.balance_after == 50
    assert again.replayed and again.points == 150 and again.balance_after == 50
    # the 1-year lot is used up first; 50 of the 5-year lot remain
    assert len(lots) == 1 and lots["test"].remaining == 50
    with pytest.raises(AppError) as refused:
        points.spend_points(member_id, 51, key="s2")
    assert refused.value.code == "insufficient_points"
    assert_points_ok()


def test_exchange_into_bonus_and_bad_amounts(app, make_member):
    member_id = make_member()
    points.award_points(member_id, 1_000, key="seed", source="test")
    done = loyalty.exchange(member_id, 500, key="x1")
    assert done.bonus_fen == 500 and done.points_balance == 500
    assert ledger.get_balance(member_id).bonus_fen == 500
    replay = loyalty.exchange(member_id, 500, key="x1")
    assert replay.posting.replayed and ledger.get_balance(member_id).bonus_fen == 500
    for bad in (-5, 0, 12_345_678_900):
        with pytest.raises(AppError):
            loyalty.exchange(member_id, bad, key=f"bad{bad}")
    with pytest.raises(AppError) as refused:
        loyalty.exchange(member_id, 600, key="x2")  # more than the member has: nothing applied
    assert refused.value.code == "insufficient_points"
    assert ledger.get_balance(member_id).bonus_fen == 500 and points.balance(member_id) == 500
    assert_points_ok()
    assert_ledger_ok()


def test_redemption_limits(app, make_member):
    member_id = make_member()
    points.award_points(member_id, 10_000, key="seed", source="test")
    # default: 100 points = 1.00 yuan, at most 50 % of an order
    ok = loyalty.redeem_for_order(member_id, 2_000, order_fen=4_000, key="o1")
    assert ok.deduct_fen == 2_000 and ok.balance_after == 8_000
    with pytest.raises(AppError) as over:
        loyalty.redeem_for_order(member_id, 2_100, order_fen=4_000, key="o2")
    assert over.value.code == "points_over_order_limit"
    with pytest.raises(AppError) as too_many:
        loyalty.redeem_for_order(member_id, 9_000, order_fen=100_000, key="o3")
    assert too_many.value.code == "insufficient_points"
    assert loyalty.max_redeemable(member_id, 4_000) == {"points": 2_000, "deduct_fen": 2_000, "balance": 8_000}
    assert points.balance(member_id) == 8_000
    assert_points_ok()


def test_earning_with_level_multiplier_member_day_and_refund_take_back(app, org, make_member):
    from mp_backend.members.cards import ensure_card_type, grant_card

    member_id = make_member()
    gold = ensure_card_type("gold", "金卡", rank=2, discount_percent=95)
    gold.points_multiplier_percent = 150
    grant_card(member_id, gold.id, only_non_members=False, source="test", reference="t")
    loyalty.create_earn_rule(org["staff"]["admin"], trigger="spend", points_per_yuan=1)
    loyalty.update_settings(org["staff"]["admin"], member_day=8, member_day_multiplier_percent=200)
    with time_machine.travel(at("2026-05-07T12:00:00"), tick=False):
        assert loyalty.earn_for_payment(member_id, 10_000, payment_key="pay-1") == 150  # 100 yuan x1.5
    with time_machine.travel(at("2026-05-08T12:00:00"), tick=False):
        assert loyalty.earn_for_payment(member_id, 10_000, payment_key="pay-2") == 300  # member day x2
        assert loyalty.earn_for_payment(member_id, 10_000, payment_key="pay-2") == 300  # replay: once
    assert points.balance(member_id) == 450

    # a refund of half of pay-2 takes back half its points; the rest of the refunds the rest, never more
    def refund(key: str) -> loyalty.RefundedPoints:
        return loyalty.refund_points(member_id, "pay-2", refund_key=key, refund_fen=5_000, payment_fen=10_000)

    assert refund("r1").taken == 150
    assert refund("r1") == loyalty.RefundedPoints(150, 0, 150, 0, 0, replayed=True)  # once per refund key
    assert refund("r2").taken == 150
    assert refund("r3").due == 0  # beyond the payment: nothing more
    assert points.balance(member_id) == 150
    assert_points_ok()


def test_manual_adjustment_through_the_console(client, admin, org, make_member):
    member_id = make_member()
    path = f"/admin/api/members/{member_id}/points/adjustments"
    added = admin("POST", path, {"delta": 300, "reason": "补录积分", "request_id": "adj-1"}, status=201)
    assert added["balance_after"] == 300
    taken = admin("POST", path, {"delta": -100, "reason": "误发", "request_id": "adj-2"}, status=201)
    assert taken["balance_after"] == 200
    again = admin("POST", path, {"delta": -100, "reason": "误发", "request_id": "adj-2"}, status=201)  # replay
    assert (again["replayed"], again["balance_after"]) == (True, 200)
    # the same request id with another amount, or for another member: refused, nothing leaked or changed
    other = make_member()
    for who, body in (
        (member_id, {"delta": 5000, "reason": "误发", "request_id": "adj-2"}),
        (other, {"delta": 300, "reason": "补录积分", "request_id": "adj-1"}),
    ):
        refused = admin("POST", f"/admin/api/members/{who}/points/adjustments", body, status=409)
        assert refused["error"]["code"] == "idempotency_conflict" and "balance_after" not in refused
    assert points.balance(other) == 0
    assert admin("POST", path, {"delta": -1000, "reason": "x", "request_id": "adj-3"}, status=409)["error"]["code"] == (
        "insufficient_points"
    )
    assert admin("POST", path, {"delta": 5, "reason": "", "request_id": "adj-4"}, status=400)
    assert points.balance(member_id) == 200
    assert_points_ok()


def test_member_points_api_and_negative_exchange(client, app, make_member):
    from mp_backend.members import service as members

    login = members.login_with_openid(app.config["WECHAT_WXA_APPID"], "wxa-points")
    token = members.issue_member_token(login.member)
    points.award_points(login.member.id, 300, key="seed", source="test", validity_days=10)
    headers = {"Authorization": f"Bearer {token}"}
    mine = client.get("/api/me/points", headers=headers).get_json()
    assert mine["balance"] == 300 and mine["expiring_soon"] == 300 and len(mine["items"]) == 1
    bad = client.post("/api/me/points/exchange", json={"points": -100, "request_id": "n1"}, headers=headers)
    assert bad.status_code == 400 and "error" in bad.get_json()
    done = client.post("/api/me/points/exchange", json={"points": 200, "request_id": "e1"}, headers=headers)
    assert done.status_code == 201 and done.get_json()["bonus_fen"] == 200
    me = client.get("/api/me", headers=headers).get_json()
    assert me["points"] == 100 and me["balance"]["bonus_fen"] == 200
    assert_ledger_ok()
    assert_points_ok()


def test_expiry_in_batches_resumes_where_it_stopped(app, make_member):
    ids = [make_member() for _ in range(3)]
    with time_machine.travel(datetime(2026, 1, 1, 4, tzinfo=UTC), tick=False):
        for n, member_id in enumerate(ids):
            for k in range(4):
                points.award_points(member_id, 10 + k, key=f"b{n}-{k}", source="test", validity_days=1)
    with time_machine.travel(datetime(2026, 1, 5, tzinfo=UTC), tick=False):
        # a run killed after two batches of 5 ...
        assert loyalty.expire_due(batch_size=5, max_batches=2) == 10
        # ... is finished by the next run, which expires only the rest
        assert loyalty.expire_due(batch_size=5) == 2
        assert loyalty.expire_due(batch_size=5) == 0
    assert all(points.balance(m) == 0 for m in ids)
    assert_points_ok()


def test_an_earning_rule_for_an_unknown_store_is_404_and_creates_nothing(client, admin, org):
    from mp_backend.loyalty.models import EarnRule

    body = {"trigger": "spend", "points_per_yuan": 1, "store_id": 2_147_483_646}
    assert admin("POST", "/admin/api/points/rules", body, status=404)["error"]["code"] == "store_not_found"
    assert db.session.scalars(select(EarnRule)).all() == []
