"""Mini-program subscribe messages (one consent, one message; 43101 falls back to the official account)
and birthday greetings with birthday points (once per member and year, the merchant's day, 29 February
on 28 February in other years), through the fake WeChat; on Redis a real RQ worker sends them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from flask import current_app
from sqlalchemy import select, update

from mp_backend.extensions import db, jobs
from mp_backend.ledger import points
from mp_backend.loyalty import reminders
from mp_backend.loyalty.models import PointsReminder, SubscribeConsent
from mp_backend.members.models import Member, MemberOpenid
from mp_backend.models_base import utcnow
from tests.conftest import assert_ledger_ok, count_rows
from tests.points.conftest import TEMPLATE, assert_points_ok
from tests.web.conftest import bearer, error_of, wxa_login  # noqa: F401

SUBSCRIBE = "sub-points-expiry"
BIRTHDAY = "tpl-birthday"
CONFIG = {
    "WECHAT_TEMPLATE_POINTS_EXPIRY": TEMPLATE,
    "WECHAT_SUBSCRIBE_TEMPLATE_POINTS_EXPIRY": SUBSCRIBE,
    "WECHAT_TEMPLATE_BIRTHDAY": BIRTHDAY,
    "POINTS_REMINDER_RECLAIM_SECONDS": 0,
}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def drain() -> None:
    """On Redis, a real RQ worker (burst) runs what the jobs queued; in process they already ran."""
    if jobs.queue is not None:
        from jobs.worker import make_worker

        db.session.remove()
        make_worker(current_app._get_current_object()).work(burst=True)


def add_mp_openid(member_id: int, openid: str) -> None:
    db.session.add(
        MemberOpenid(
            member_id=member_id, appid=current_app.config["WECHAT_MP_APPID"], openid=openid, created_at=utcnow()
        )
    )
    db.session.commit()


def reminder_rows() -> list[tuple[int, str, str, int | None]]:
    db.session.rollback()
    rows = db.session.scalars(select(PointsReminder).order_by(PointsReminder.id))
    return [(r.offset_days, r.channel, r.status, r.errcode) for r in rows]


@pytest.mark.parametrize("app_overrides", [CONFIG])
def test_subscribe_consent_used_once_then_43101_falls_back_to_the_official_account(client, fake, wxa_login):  # noqa: F811
    # given a member of the mini program (who also follows the official account)
    login = wxa_login("w-alice")
    token, member_id = login["token"], login["member"]["id"]
    add_mp_openid(member_id, "o-alice")
    # bad reports are refused and record nothing
    for body, code in (
        ({"accepted": ["not-ours"]}, "unknown_template"),
        ({"accepted": []}, "invalid_request"),
        ({"accepted": [SUBSCRIBE] * 4}, "invalid_request"),
        ({"accepted": "x"}, "invalid_request"),
    ):
        response = client.post("/api/me/subscriptions", json=body, headers=bearer(token))
        assert response.status_code == 400 and error_of(response)["code"] == code, (body, response.get_json())
    assert client.post("/api/me/subscriptions", json={"accepted": [SUBSCRIBE]}).status_code == 401
    assert count_rows("subscribe_consent") == 0

    # when the member accepts one subscribe message (at WeChat and reported by the mini program)
    fake.grant_subscribe("w-alice", SUBSCRIBE)
    fake.fail_next("cgi-bin/message/subscribe/send", errcode=45009, errmsg="reach max api daily quota limit")
    reported = client.post("/api/me/subscriptions", json={"accepted": [SUBSCRIBE]}, headers=bearer(token))
    assert reported.status_code == 201
    assert reported.get_json()["items"] == [{"template_id": SUBSCRIBE, "kind": "expiry", "unused": 1}]
    start = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        points.award_points(member_id, 80, key="a", source="test", validity_days=40)
    expiry = points.last_valid_day(points.lots_of(member_id, at=start.replace(tzinfo=None))[0].expires_at)

    def run(days_left: int) -> None:
        moment = datetime.combine(expiry - timedelta(days=days_left), datetime.min.time()).replace(tzinfo=UTC)
        with time_machine.travel(moment + timedelta(hours=2), tick=False):
            reminders.run_daily()
            drain()
            reminders.run_daily()  # twice the same day: nothing more
            drain()

    # then the 30-day reminder goes out as a subscribe message, using the consent up (the rate-limited
    # first try gave the consent back: WeChat did not use it)
    run(30)
    assert reminder_rows() == [(30, "wxa", "sent", 0)]
    assert len(fake.subscribe_messages) == 1 and fake.template_messages == []
    message = fake.subscribe_messages[0]
    assert message["touser"] == "w-alice" and message["template_id"] == SUBSCRIBE
    assert message["data"]["number1"]["value"] == "80" and message["page"] == reminders.WXA_PAGE
    assert client.get("/api/me/subscriptions", headers=bearer(token)).get_json()["items"] == []
    # with no consent left, the 15-day one goes to the official account
    run(15)
    assert reminder_rows()[1] == (15, "mp", "sent", 0)
    # a consent we recorded but WeChat no longer has (43101): marked refused, the official account instead
    client.post("/api/me/subscriptions", json={"accepted": [SUBSCRIBE]}, headers=bearer(token))
    run(3)
    assert reminder_rows()[2] == (3, "mp", "sent", 0)
    db.session.rollback()
    statuses = [c.status for c in db.session.scalars(select(SubscribeConsent).order_by(SubscribeConsent.id))]
    assert statuses == ["used", "refused"]
    assert len(fake.subscribe_messages) == 1 and len(fake.template_messages) == 2
    assert fake.subscribe_consents_left("w-alice", SUBSCRIBE) == 0
    assert_points_ok()


def test_the_fake_answers_subscribe_send_like_wechat(fake):
    import requests

    token = fake._issue_token(fake.settings.wxa_appid)
    url = f"{fake.base_url}cgi-bin/message/subscribe/send?access_token={token}"
    data = {"number1": {"value": "1"}}

    def send(body: dict) -> int:
        return requests.post(url, json=body, timeout=5).json()["errcode"]

    assert send({"touser": "bad openid!", "template_id": "t", "data": data}) == 40003
    assert send({"touser": "w-x", "template_id": "", "data": data}) == 40037
    assert send({"touser": "w-x", "template_id": "t", "data": {"number1": "1"}}) == 47003
    assert send({"touser": "w-x", "template_id": "t", "data": data}) == 43101
    fake.grant_subscribe("w-x", "t")
    assert send({"touser": "w-x", "template_id": "t", "data": data}) == 0
    assert send({"touser": "w-x", "template_id": "t", "data": data}) == 43101  # one consent, one message
    mp_token = fake._issue_token(fake.settings.mp_appid)
    wrong_app = f"{fake.base_url}cgi-bin/message/subscribe/send?access_token={mp_token}"
    assert requests.post(wrong_app, json={}, timeout=5).json()["errcode"] == 48001


@pytest.mark.parametrize("app_overrides", [CONFIG])
def test_birthday_greetings_and_points_once_a_year_at_shanghai_midnight(client, admin, fake, make_member):
    # given birthday points set by the merchant, and members born on 28 Feb, 29 Feb and 1 Mar
    assert admin("PUT", "/admin/api/points/settings", {"birthday_points": 88})["birthday_points"] == 88
    born = {"feb28": date(1990, 2, 28), "feb29": date(1992, 2, 29), "mar1": date(1991, 3, 1), "none": None}
    ids = {}
    for name, birthday in born.items():
        ids[name] = make_member()
        db.session.execute(update(Member).where(Member.id == ids[name]).values(birthday=birthday))
        db.session.commit()
        add_mp_openid(ids[name], f"o-{name}")

    def run(moment: datetime) -> dict:
        with time_machine.travel(moment, tick=False):
            done = reminders.run_birthdays()
            drain()
            return done

    def greeted() -> list[str]:
        return sorted(m["touser"] for m in fake.template_messages)

    # when the job runs one second before midnight in Shanghai (15:59:59 UTC), nobody's birthday yet
    assert run(at("2027-02-27T23:59:59"))["greetings"] == 0
    # at midnight (16:00 UTC on the 27th) it is the 28th: in 2027, 28 Feb and 29 Feb birthdays
    assert run(at("2027-02-28T00:00:00"))["greetings"] == 2
    assert run(at("2027-02-28T09:00:00"))["greetings"] == 0  # again the same day: nothing
    assert greeted() == ["o-feb28", "o-feb29"]
    assert run(at("2027-03-01T00:00:01"))["greetings"] == 1
    assert greeted() == ["o-feb28", "o-feb29", "o-mar1"]
    # in 2028 (a leap year) 29 Feb birthdays wait for the 29th
    assert run(at("2028-02-28T00:00:01"))["greetings"] == 1
    assert run(at("2028-02-29T00:00:01"))["greetings"] == 1
    assert greeted() == ["o-feb28", "o-feb28", "o-feb29", "o-feb29", "o-mar1"]
    # each greeting reads well from its keyword fields, with the points
    message = fake.template_messages[0]
    assert message["template_id"] == BIRTHDAY and "88 积分" in message["data"]["keyword3"]["value"]

    # then the points: 88 a year each, under one key per member and year
    db.session.rollback()
    keys = sorted(db.session.scalars(select(points.entry_t.c.idempotency_key).where(points.entry_t.c.kind == "award")))
    assert keys == sorted(
        [f"birthday:{ids['feb28']}:2027", f"birthday:{ids['feb29']}:2027", f"birthday:{ids['mar1']}:2027"]
        + [f"birthday:{ids['feb28']}:2028", f"birthday:{ids['feb29']}:2028"]
    )
    assert reminder_rows().count((0, "mp", "sent", 0)) == 5
    assert_points_ok()
    assert_ledger_ok()


@pytest.mark.parametrize("app_overrides", [CONFIG])
def test_a_birthday_changed_after_the_greeting_gets_no_second_one_that_year(client, fake, make_member):
    member_id = make_member()
    add_mp_openid(member_id, "o-mover")
    db.session.execute(update(Member).where(Member.id == member_id).values(birthday=date(1990, 5, 1)))
    db.session.commit()
    with time_machine.travel(at("2027-05-01T10:00:00"), tick=False):
        reminders.run_birthdays()
        drain()
    db.session.execute(update(Member).where(Member.id == member_id).values(birthday=date(1990, 6, 1)))
    db.session.commit()
    with time_machine.travel(at("2027-06-01T10:00:00"), tick=False):
        assert reminders.run_birthdays()["greetings"] == 0
        drain()
    assert len(fake.template_messages) == 1
