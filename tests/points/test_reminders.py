"""Expiry reminders through the fake WeChat: once per member, expiry date and offset, whatever
WeChat answers and however often the job runs; level rules and card operations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from mp_backend.extensions import db, jobs
from mp_backend.ledger import points
from mp_backend.loyalty import reminders
from mp_backend.loyalty.models import PointsReminder
from tests.points.conftest import TEMPLATE, assert_points_ok

START = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # 10:00 Shanghai
CONFIG = [{"WECHAT_TEMPLATE_POINTS_EXPIRY": TEMPLATE, "POINTS_REMINDER_RECLAIM_SECONDS": 0}]


def statuses() -> list[tuple[int, str]]:
    db.session.rollback()
    return [(r.offset_days, r.status) for r in db.session.scalars(select(PointsReminder).order_by(PointsReminder.id))]


def run_daily(moment: datetime) -> dict:
    """The daily job; on Redis (TEST_REDIS_URL) a real RQ worker (burst) then runs the sends it enqueued."""
    with time_machine.travel(moment, tick=False):
        done = reminders.run_daily()
        if jobs.queue is not None:
            from flask import current_app

            from jobs.worker import make_worker

            db.session.remove()
            make_worker(current_app._get_current_object()).work(burst=True)
        return done


@pytest.mark.parametrize("app_overrides", CONFIG)
def test_reminders_30_15_3_days_each_once_when_the_job_runs_twice(app, fake, mp_member):
    member_id = mp_member("o-alice")
    with time_machine.travel(START, tick=False):
        points.award_points(member_id, 120, key="a", source="test", validity_days=40)
    expiry = points.last_valid_day(points.lots_of(member_id, at=START.replace(tzinfo=None))[0].expires_at)
    for days_left in (30, 15, 3):
        day = datetime.combine(expiry - timedelta(days=days_left), datetime.min.time()) + timedelta(hours=1)
        moment = day.replace(tzinfo=UTC)
        run_daily(moment)
        run_daily(moment)  # the job runs twice the same day
    assert statuses() == [(30, "sent"), (15, "sent"), (3, "sent")]
    assert len(fake.template_messages) == 3
    message = fake.template_messages[0]
    assert set(message["data"]) == {"keyword1", "keyword2", "keyword3"}  # keyword fields only
    assert message["client_msg_id"] and message["url"].endswith("/static/member.html#points")
    assert "120 积分" in message["data"]["keyword1"]["value"]
    assert_points_ok()


@pytest.mark.parametrize("app_overrides", CONFIG)
def test_wechat_answers_give_up_retry_and_token_refresh(app, fake, mp_member):
    ids = {name: mp_member(f"o-{name}") for name in ("blocked", "limited", "token")}
    with time_machine.travel(START, tick=False):
        for name, member_id in ids.items():
            points.award_points(member_id, 10, key=name, source="test", validity_days=5)
    fake.fail_next("cgi-bin/message/template/send", errcode=43004, errmsg="require subscribe")
    fake.fail_next("cgi-bin/message/template/send", errcode=45009, errmsg="reach max api daily quota limit")
    fake.fail_next("cgi-bin/message/template/send", errcode=40001, errmsg="invalid credential")
    moment = START + timedelta(hours=1)
    run_daily(moment)
    log = {r.member_id: r for r in db.session.scalars(select(PointsReminder))}
    assert log[ids["blocked"]].status == "gave_up" and log[ids["blocked"]].errcode == 43004
    assert log[ids["limited"]].status == "retry" and log[ids["limited"]].errcode == 45009
    assert log[ids["token"]].status == "sent"  # refreshed the token and sent
    # the next run sends the rate-limited one and never the one that gave up
    run_daily(moment + timedelta(hours=1))
    assert sorted(s for _, s in statuses()) == ["gave_up", "sent", "sent"]
    assert sorted(m["touser"] for m in fake.template_messages) == ["o-limited", "o-token"]


@pytest.mark.parametrize("app_overrides", CONFIG)
def test_a_job_that_died_after_wechat_accepted_sends_nothing_twice(app, fake, mp_member):
    member_id = mp_member("o-crash")
    with time_machine.travel(START, tick=False):
        points.award_points(member_id, 10, key="c", source="test", validity_days=5)
        reminders.plan()
        [reminder_id] = reminders.due_ids()
        claimed = reminders._claim(reminder_id, START.replace(tzinfo=None))
        from mp_backend.wechat.templates import send_template

        # WeChat accepts, then the worker dies before recording it: the row stays "sending"
        send_template(claimed["openid"], TEMPLATE, claimed["data"], client_msg_id=claimed["client_msg_id"])
    assert statuses() == [(15, "sending")]
    run_daily(START + timedelta(hours=1))
    assert statuses() == [(15, "sent")]
    assert len(fake.template_messages) == 1  # the resend carried the same client_msg_id


@pytest.mark.parametrize("app_overrides", CONFIG)
def test_notification_log_in_the_console(client, admin, fake, mp_member):
    member_id = mp_member("o-log")
    with time_machine.travel(START, tick=False):
        points.award_points(member_id, 10, key="l", source="test", validity_days=5)
    run_daily(START + timedelta(hours=1))
    log = admin("GET", "/admin/api/points/reminders")
    assert [(r["member_id"], r["status"], r["offset_days"]) for r in log["items"]] == [(member_id, "sent", 15)]
    assert log["items"][0]["msgid"]


def test_level_rules_refuse_loops_and_upgrade_nightly(client, admin, make_member):
    from mp_backend.ledger import service as ledger
    from mp_backend.members import levels

    silver = admin("POST", "/admin/api/card-types", {"code": "silver", "name": "银卡", "level_rank": 1}, status=201)
    gold = admin(
        "POST",
        "/admin/api/card-types",
        {"code": "gold", "name": "金卡", "level_rank": 2, "discount_percent": 95, "points_validity_years": 3},
        status=201,
    )
    bad_years = {"code": "x", "name": "x", "points_validity_years": 4}
    assert admin("POST", "/admin/api/card-types", bad_years, status=400)["error"]
    up = {"direction": "up", "from_card_type_id": silver["id"], "to_card_type_id": gold["id"], "metric": "recharge"}
    admin("POST", "/admin/api/level-rules", {**up, "threshold": 100_000, "period_days": 365}, status=201)
    # a downgrade asking more to stay gold than it took to become gold: a loop, refused, nothing kept
    down = {"direction": "down", "from_card_type_id": gold["id"], "to_card_type_id": silver["id"]}
    loop = admin(
        "POST",
        "/admin/api/level-rules",
        {**down, "metric": "recharge", "threshold": 200_000, "period_days": 365},
        status=400,
    )
    assert loop["error"]["code"] == "level_rule_loop"
    backwards = {
        **up,
        "to_card_type_id": silver["id"],
        "from_card_type_id": gold["id"],
        "threshold": 1,
        "period_days": 30,
    }
    assert admin("POST", "/admin/api/level-rules", backwards, status=400)["error"]["code"] == "level_rule_loop"
    assert len(admin("GET", "/admin/api/level-rules")["items"]) == 1
    # a silver member who recharged 1,000 yuan this year becomes gold at night, with the reason recorded
    from mp_backend.members.cards import grant_card

    member_id = make_member()
    grant_card(member_id, silver["id"], only_non_members=False, source="test", reference="t")
    ledger.credit(member_id, 100_000, key="r", operator="test")
    assert levels.evaluate_all() == 1
    assert levels.evaluate_all() == 0
    change = levels.history(member_id)[-1]
    assert change.to_card_type_id == gold["id"] and "升级" in change.reason


def test_card_loss_freeze_replace(client, admin, make_member):
    from mp_backend.ledger import service as ledger
    from mp_backend.members.cards import card_events

    member_id = make_member(1_000)
    path = f"/admin/api/members/{member_id}/card"
    before = admin("GET", f"/admin/api/members/{member_id}")["card_no"]
    assert admin("POST", path, {"action": "report_loss", "reason": "会员来电挂失"})["status"] == "lost"
    assert (
        admin("POST", path, {"action": "freeze", "reason": "x"}, status=409)["error"]["code"] == "card_status_conflict"
    )
    from mp_backend.errors import MemberFrozen

    with pytest.raises(MemberFrozen):
        ledger.debit(member_id, 100, key="lost-pay", operator="test")  # a lost card cannot pay
    replaced = admin("POST", path, {"action": "replace", "reason": "补办新卡"})
    assert replaced["card_no"] != before and replaced["status"] == "active"
    assert replaced["balance"]["principal_fen"] == 1_000  # same wallet
    assert admin("POST", path, {"action": "freeze", "reason": "风控"})["status"] == "frozen"
    assert admin("POST", path, {"action": "unfreeze", "reason": "核实无误"})["status"] == "active"
    assert admin("POST", path, {"action": "freeze", "reason": ""}, status=400)["error"]
    events = [(e.action, e.staff_id is not None) for e in card_events(member_id)]
    assert events == [("report_loss", True), ("replace", True), ("freeze", True), ("unfreeze", True)]
