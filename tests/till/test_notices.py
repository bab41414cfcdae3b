"""A till's charge and refund each send the member one balance change notice, after commit (issue 13:
"after a recharge, payment or refund commits, a job sends the member a template message")."""

from __future__ import annotations

import pytest

from mp_backend.extensions import db
from mp_backend.members.models import MemberOpenid
from tests.conftest import assert_ledger_ok
from tests.ops.conftest import TEMPLATE, run_jobs


@pytest.mark.parametrize("app_overrides", [{"WECHAT_TEMPLATE_BALANCE_CHANGE": TEMPLATE}])
def test_a_till_charge_and_its_refund_each_send_one_notice(app, fake, till, member):
    # given a member who follows the official account
    db.session.add(MemberOpenid(member_id=member["id"], appid=app.config["WECHAT_MP_APPID"], openid="o_mp_wang"))
    db.session.commit()
    # when the till charges 12.00 (and retries the same request), then refunds 2.00
    charged = till.charge({"card_no": member["card_no"]}, 1_200, "T-1", key="c-1", status=201).get_json()
    till.charge({"card_no": member["card_no"]}, 1_200, "T-1", key="c-1")
    till.post("/open/api/v1/refunds", {"charge_id": charged["charge_id"], "amount_fen": 200}, status=201)
    run_jobs(app)
    # then exactly two messages went out, saying what happened, how much and the balance after
    assert [m["touser"] for m in fake.template_messages] == ["o_mp_wang", "o_mp_wang"]
    words = [(m["data"]["keyword1"]["value"], m["data"]["keyword2"]["value"]) for m in fake.template_messages]
    assert words == [("门店消费", "-12.00 元"), ("门店退款", "+2.00 元")]
    assert fake.template_messages[-1]["data"]["keyword3"]["value"] == "390.00 元"
    assert_ledger_ok()
