"""WeChat's member card: signed card events through the fake WeChat, activation with the card number,
balance and points, and pushes of the current values after each ledger change (the last value wins)."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from mp_backend.extensions import db, jobs
from mp_backend.ledger import points
from mp_backend.ledger import service as ledger
from mp_backend.members import wechat_card
from mp_backend.members.models import Member
from mp_backend.members.wechat_card_models import WechatCard, WechatCardPush
from mp_backend.models_base import utcnow
from mp_backend.transaction import transactional
from mp_backend.wechat.fake import FakeWeChat
from tests.conftest import assert_ledger_ok, count_rows

from .conftest import CARD_ID, drain

CONFIG = {"WECHAT_CARD_ID": CARD_ID, "WECHAT_CARD_PUSH_LEASE_SECONDS": 30}
FORM = {"phone": "13900139000", "name": "张三", "birthday": "1988-2-9"}


@pytest.fixture
def app_overrides() -> dict:
    return dict(CONFIG)


def card_row(member_id: int) -> WechatCard:
    db.session.rollback()
    row = db.session.scalars(select(WechatCard).where(WechatCard.member_id == member_id)).one()
    return row


def pushes(member_id: int) -> list[tuple[str, str, int, int]]:
    db.session.rollback()
    rows = db.session.scalars(select(WechatCardPush).where(WechatCardPush.member_id == member_id).order_by("id"))
    return [(r.action, r.status, r.balance_fen, r.points) for r in rows]


def available(member_id: int) -> int:
    db.session.rollback()
    return ledger.get_balance(member_id).available_fen


def take_and_activate(app, client, fake, openid: str, **form: str) -> str:  # type: ignore[no-untyped-def]
    """The member takes the card and submits the form; WeChat sends both events, signed."""
    code = fake.give_member_card(openid, CARD_ID, **(form or FORM))
    for event in ("user_get_card", "submit_membercard_user_info"):
        reply = fake.mp_post(client, fake.card_event(openid, event, CARD_ID, code))
        assert reply.status == 200 and reply.body == "success", reply
    drain(app)
    return code


def test_taking_and_submitting_the_card_activates_it_once_with_number_balance_and_points(app, client, fake, mp_member):
    member_id = mp_member("o-zhang", principal_fen=12_300, points_count=250)
    code = fake.give_member_card("o-zhang", CARD_ID, **FORM)
    reply = fake.mp_post(client, fake.card_event("o-zhang", "user_get_card", CARD_ID, code))
    assert reply.status == 200 and card_row(member_id).status == "received"
    submit = fake.card_event("o-zhang", "submit_membercard_user_info", CARD_ID, code)
    assert fake.mp_post(client, submit).status == 200
    drain(app)
    # WeChat retries the same event (no answer in time): acknowledged, not acted on again
    assert fake.mp_post(client, submit).body == "success"
    # and a late copy past the replay window (new CreateTime) finds the card activated
    time.sleep(1.1)
    assert fake.mp_post(client, fake.card_event("o-zhang", "submit_membercard_user_info", CARD_ID, code)).status == 200
    drain(app)
    wechat = fake.member_cards[code]
    member = db.session.get(Member, member_id)
    assert wechat.activations == 1 and len(fake.calls_to("card/membercard/activate")) == 1
    assert wechat.membership_number == member.card_no
    assert (wechat.balance, wechat.bonus) == (12_300, 250)
    assert member.phone == "13900139000" and member.name == "张三" and str(member.birthday) == "1988-02-09"
    assert member.activated_at is not None
    row = card_row(member_id)
    assert row.status == "activated" and row.pushed_seq == row.sync_seq
    assert pushes(member_id) == [("activate", "sent", 12_300, 250)]
    assert_ledger_ok()


def test_every_ledger_change_pushes_the_current_totals(app, client, fake, mp_member):
    member_id = mp_member("o-push", principal_fen=1_000)
    code = take_and_activate(app, client, fake, "o-push")
    ledger.credit(member_id, 500, key="k-credit", operator="test")
    drain(app)
    ledger.debit(member_id, 200, key="k-debit", operator="test")
    points.award_points(member_id, 40, key="k-points", source="test")
    drain(app)
    wechat = fake.member_cards[code]
    assert (wechat.balance, wechat.bonus) == (1_300, 40) == (available(member_id), points.balance(member_id))
    for update in wechat.updates:  # totals only: a repeated push cannot add twice
        assert "add_balance" not in update and "add_bonus" not in update
    assert [p[:2] for p in pushes(member_id)][1:] == [("update", "sent")] * len(wechat.updates)
    # a change that is rolled back pushes nothing
    calls = len(fake.calls_to("card/membercard/updateuser"))
    from mp_backend.errors import InsufficientBalance

    with pytest.raises(InsufficientBalance):
        ledger.debit(member_id, 1_000_000, key="k-too-much", operator="test")
    drain(app)
    assert len(fake.calls_to("card/membercard/updateuser")) == calls
    assert_ledger_ok()


def test_a_push_that_died_holding_the_card_is_taken_over_and_sends_the_latest_value(app, client, fake, mp_member):
    member_id = mp_member("o-died", principal_fen=1_000)
    code = take_and_activate(app, client, fake, "o-died")

    @transactional
    def credit_then_a_push_claims_and_dies() -> object:
        # A push job claims the card, then its worker is killed before it sends anything. (Claimed in
        # the change's own transaction, so that the in-process push, run at its commit, finds it held.)
        ledger.credit(member_id, 100, key="k-1", operator="test")
        return wechat_card._claim_push(member_id, utcnow())

    db.session.rollback()
    stuck = credit_then_a_push_claims_and_dies()
    assert isinstance(stuck, wechat_card.Snapshot) and stuck.balance_fen == 1_100
    drain(app)  # the change's own push finds the card claimed and leaves it (RQ: retried later)
    ledger.credit(member_id, 200, key="k-2", operator="test")
    drain(app)
    assert fake.member_cards[code].balance == 1_000  # nothing sent while the dead claim holds
    # the retry, once the lease (WECHAT_CARD_PUSH_LEASE_SECONDS, 30) has run out: a clock the test
    # controls, so that a slow machine cannot let the lease run out before the assertion above
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=31), tick=False):
        assert wechat_card.push(member_id) == "sent"
    assert fake.member_cards[code].balance == 1_300 == available(member_id)
    # the old job retried again, or any older pending push: nothing newer to send
    assert wechat_card.push(member_id) == "current"
    assert len(fake.member_cards[code].updates) == 1
    assert pushes(member_id)[-1] == ("update", "sent", 1_300, 0)
    assert_ledger_ok()


def test_a_refused_push_is_logged_and_the_retry_sends_the_latest_value(app, client, fake, mp_member):
    member_id = mp_member("o-refused", principal_fen=1_000)
    code = take_and_activate(app, client, fake, "o-refused")
    fake.fail_next("card/membercard/updateuser", errcode=45009, errmsg="reach max api daily quota limit")
    ledger.credit(member_id, 100, key="k-1", operator="test")
    drain(app)
    assert fake.member_cards[code].balance == 1_000
    failed = db.session.scalars(select(WechatCardPush).where(WechatCardPush.status == "failed")).one()
    assert (failed.errcode, failed.balance_fen) == (45009, 1_100)
    ledger.credit(member_id, 50, key="k-2", operator="test")  # a newer change supersedes the failed one
    drain(app)
    assert wechat_card.push(member_id) == "current"  # the failed job's retry: already sent the newer value
    assert fake.member_cards[code].balance == 1_150 == available(member_id)
    assert [u["balance"] for u in fake.member_cards[code].updates] == [1_150]
    assert_ledger_ok()


def test_a_rejected_token_is_refreshed_and_the_push_still_goes_out(app, client, fake, mp_member):
    member_id = mp_member("o-token", principal_fen=500)
    code = take_and_activate(app, client, fake, "o-token")
    fake.expire_tokens()
    ledger.credit(member_id, 1, key="k-token", operator="test")
    drain(app)
    assert fake.member_cards[code].balance == 501


def test_a_forged_card_event_is_refused_and_logged(app, client, fake, mp_member, caplog):
    member_id = mp_member("o-forged", principal_fen=1_000)
    code = fake.give_member_card("o-forged", CARD_ID, **FORM)
    forger = FakeWeChat(dataclasses.replace(fake.settings, mp_token="not-the-token"))
    with caplog.at_level(logging.WARNING):
        for event in ("user_get_card", "submit_membercard_user_info"):
            reply = forger.mp_post(client, forger.card_event("o-forged", event, CARD_ID, code))
            assert reply.status == 403
    drain(app)
    assert "rejected request" in caplog.text
    assert count_rows("wechat_card") == 0 and fake.member_cards[code].activations == 0
    assert db.session.get(Member, member_id).activated_at is None


def test_an_event_for_another_card_is_not_acted_on_and_logged(app, client, fake, caplog):
    code = fake.give_member_card("o-stranger", "pOTHERCARD", **FORM)
    with caplog.at_level(logging.WARNING):
        for event in ("user_get_card", "submit_membercard_user_info"):
            reply = fake.mp_post(client, fake.card_event("o-stranger", event, "pOTHERCARD", code))
            assert reply.status == 200 and reply.body == "success"  # WeChat would only resend it
    drain(app)
    assert "unknown card" in caplog.text
    assert count_rows("wechat_card") == 0 and count_rows("member") == 0
    assert fake.calls_to("card/membercard/userinfo/get") == []


def test_a_phone_of_another_member_leaves_the_card_unactivated_and_says_why(app, client, fake, mp_member):
    from mp_backend.members import activation

    owner = mp_member("o-owner")
    activation.activate(owner, phone=FORM["phone"], name="李四", birthday="1980-01-01")
    member_id = mp_member("o-second", principal_fen=300)
    code = take_and_activate(app, client, fake, "o-second")
    row = card_row(member_id)
    assert row.status == "rejected" and row.detail.startswith("phone_taken")
    assert fake.member_cards[code].activations == 0
    assert db.session.get(Member, member_id).activated_at is None


def test_a_form_submitted_by_someone_else_than_the_holder_is_rejected(app, client, fake, mp_member):
    member_id = mp_member("o-sender")
    code = fake.give_member_card("o-holder", CARD_ID, **FORM)
    fake.mp_post(client, fake.card_event("o-sender", "submit_membercard_user_info", CARD_ID, code))
    drain(app)
    assert card_row(member_id).status == "rejected" and fake.member_cards[code].activations == 0


@pytest.mark.parametrize("app_overrides", [{**CONFIG, "WECHAT_CARD_NUMBER_FIELD": "1"}])
def test_a_replaced_card_keeps_the_wechat_card_in_step(app, client, fake, mp_member, admin):
    member_id = mp_member("o-replace", principal_fen=800)
    code = take_and_activate(app, client, fake, "o-replace")
    replaced = admin("POST", f"/admin/api/members/{member_id}/card", {"action": "replace", "reason": "补办新卡"})
    drain(app)
    wechat = fake.member_cards[code]
    assert wechat.updates[-1]["custom_field_value1"] == replaced["card_no"]
    assert wechat.balance == 800 and card_row(member_id).pushed_seq == card_row(member_id).sync_seq
    assert_ledger_ok()


def test_without_a_card_id_the_ledger_pushes_nothing(app, client, fake, mp_member):
    member_id = mp_member("o-off", principal_fen=100)
    take_and_activate(app, client, fake, "o-off")
    app.config["WECHAT_CARD_ID"] = ""
    ledger.credit(member_id, 100, key="k-off", operator="test")
    drain(app)
    assert fake.calls_to("card/membercard/updateuser") == []
    if jobs.queue is not None:
        assert jobs.queue.count == 0


def test_the_card_log_in_the_console(app, client, fake, mp_member, admin):
    member_id = mp_member("o-log", principal_fen=700)
    take_and_activate(app, client, fake, "o-log")
    fake.fail_next("card/membercard/updateuser", errcode=45009, errmsg="reach max api daily quota limit")
    ledger.credit(member_id, 100, key="k-log", operator="test")
    drain(app)
    log = admin("GET", f"/admin/api/wechat-card/pushes?member_id={member_id}")
    assert [(r["action"], r["status"], r["balance_fen"], r["errcode"]) for r in log["items"]] == [
        ("update", "failed", 800, 45009),
        ("activate", "sent", 700, None),
    ]
    assert admin("GET", "/admin/api/wechat-card/pushes?limit=0", status=400)
