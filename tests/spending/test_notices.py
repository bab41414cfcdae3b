"""A member's balance payment sends one balance change notice, after commit, and a retried request none."""

from __future__ import annotations

import pytest

from mp_backend.extensions import db
from mp_backend.members.models import MemberOpenid
from tests.conftest import assert_ledger_ok
from tests.ops.conftest import TEMPLATE, run_jobs
from tests.spending.helpers import pay


@pytest.mark.parametrize("app_overrides", [{"WECHAT_TEMPLATE_BALANCE_CHANGE": TEMPLATE}])
def test_a_balance_payment_sends_one_notice(app, client, fake, payer):
    # given a member with 50.00 who follows the official account
    token, member_id = payer("nina", 5_000)
    db.session.add(MemberOpenid(member_id=member_id, appid=app.config["WECHAT_MP_APPID"], openid="o_mp_nina"))
    db.session.commit()
    # when she pays an order of 20.00 from her balance, and the app retries the same request
    pay(client, token, "ORDER-1", 2_000, request_id="r-1")
    pay(client, token, "ORDER-1", 2_000, request_id="r-1", status=201)
    run_jobs(app)
    # then one message went out: what, how much, the balance after
    assert len(fake.template_messages) == 1
    data = fake.template_messages[0]["data"]
    assert (data["keyword1"]["value"], data["keyword2"]["value"], data["keyword3"]["value"]) == (
        "余额支付",
        "-20.00 元",
        "30.00 元",
    )
    assert_ledger_ok()
