"""Balance change notices (once, after commit, skipped without an official-account openid) and records."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from jobs import notices as notice_job
from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.members.models import MemberOpenid
from mp_backend.notices import service as notices
from mp_backend.notices.models import BalanceNotice
from mp_backend.transaction import transactional
from tests.conftest import assert_ledger_ok, count_rows
from tests.web.conftest import error_of

from .conftest import TEMPLATE, bearer, login, run_jobs


def with_mp_openid(app, member_id: int, openid: str) -> None:  # type: ignore[no-untyped-def]
    db.session.add(MemberOpenid(member_id=member_id, appid=app.config["WECHAT_MP_APPID"], openid=openid))
    db.session.commit()


def offline(client, token, member_id, receipt, store="sh01", status=201, **body):  # type: ignore[no-untyped-def]
    body = {"member": {"id": member_id}, "store_code": store, "method": "cash", "receipt_no": receipt, **body}
    response = client.post("/admin/api/offline-recharges", json=body, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def notice_rows() -> list[tuple[int, str]]:
    db.session.rollback()
    return [(n.entry_id, n.status) for n in db.session.scalars(select(BalanceNotice).order_by(BalanceNotice.id))]


@pytest.mark.parametrize("app_overrides", [{"WECHAT_TEMPLATE_BALANCE_CHANGE": TEMPLATE}])
def test_a_recharge_sends_one_notice_after_commit_and_a_retry_sends_nothing(
    app, client, fake, staff_token, rule, make_member
):
    # given a member who follows the official account
    member_id = make_member()
    with_mp_openid(app, member_id, "o_mp_alice")
    # when the clerk records a recharge under the rule (100 + 10 bonus)
    body = offline(client, staff_token, member_id, "N-1", rule_id=rule["id"])
    run_jobs(app)
    # then one template message went out, with the amount, the balance after, the store and the time
    assert len(fake.template_messages) == 1
    message = fake.template_messages[0]
    assert message["touser"] == "o_mp_alice" and message["template_id"] == TEMPLATE
    assert message["data"]["keyword1"]["value"] == "门店充值"
    assert message["data"]["keyword2"]["value"] == "+110.00 元"
    assert message["data"]["keyword3"]["value"] == "110.00 元"
    assert message["data"]["keyword4"]["value"] == "上海一店"
    assert notice_rows() == [(body["bonus_entry_id"], "sent")]
    # when the job runs again for the same entry (RQ retried it), or the receipt is replayed
    assert notice_job.send_balance_notice(body["bonus_entry_id"], 11_000, "门店充值") == "done"
    offline(client, staff_token, member_id, "N-1", status=200, rule_id=rule["id"])
    run_jobs(app)
    # then nothing more is sent
    assert len(fake.template_messages) == 1 and len(notice_rows()) == 1
    assert_ledger_ok()


@transactional
def _credit_then_fail(member_id: int) -> None:
    posting = ledger.credit(member_id, 500, key="rolled-back-credit", operator="test")
    notices.notify_after_commit(posting)
    raise RuntimeError("the payment failed after the credit")


@pytest.mark.parametrize("app_overrides", [{"WECHAT_TEMPLATE_BALANCE_CHANGE": TEMPLATE}])
def test_no_notice_after_a_rollback_and_a_member_without_openid_is_skipped(app, client, fake, staff_token, make_member):
    with_openid = make_member()
    with_mp_openid(app, with_openid, "o_mp_bob")
    # when a transaction that credited and asked for a notice rolls back
    with pytest.raises(RuntimeError):
        _credit_then_fail(with_openid)
    run_jobs(app)
    # then nothing is sent and nothing is recorded
    assert fake.template_messages == [] and notice_rows() == []
    assert ledger.get_balance(with_openid).available_fen == 0
    # when a member who never came through the official account is credited
    without = make_member()
    from mp_backend.recharge import service as recharge
    from tests.ops.test_offline import _admin_id

    recharge.save_settings(_admin_id(), {"free_amount_enabled": True, "free_min_fen": 100, "free_max_fen": 100_000})
    body = offline(client, staff_token, without, "N-2", amount_fen=1_000)
    run_jobs(app)
    # then the notice is recorded as skipped, without calling WeChat
    assert fake.template_messages == []
    assert notice_rows() == [(body["principal_entry_id"], "skipped")]
    assert_ledger_ok()


def test_records_for_members_and_the_merchant_filtered_and_scoped(app, client, staff_token, rule, make_member):
    # given a member (mini-program login) recharged at sh01 and at bj01, and another member at sh01
    login_response = client.post("/api/auth/wxa-login", json={"code": "sandbox-records-alice"})
    token, member_id = login_response.get_json()["token"], login_response.get_json()["member"]["id"]
    other = make_member(phone="13500000000")
    offline(client, staff_token, member_id, "REC-1", rule_id=rule["id"])
    offline(client, staff_token, member_id, "REC-2", store="bj01", rule_id=rule["id"])
    offline(client, staff_token, other, "REC-3", rule_id=rule["id"])
    # when the member reads their records
    response = client.get("/api/me/ledger?per_page=3", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    page = response.get_json()
    # then they are theirs, newest first, in words, with the balance after and the store
    assert (page["total"], page["page"], page["per_page"]) == (4, 1, 3)
    first = page["items"][0]
    assert (first["kind_text"], first["amount_yuan"], first["store_name"]) == ("赠送", "+10.00", "北京一店")
    assert first["balance_after"]["available_fen"] == 22_000
    assert [i["kind_text"] for i in page["items"]] == ["赠送", "充值", "赠送"]
    assert client.get("/api/me/ledger?per_page=101", headers=bearer(token)).status_code == 400
    assert client.get("/api/me/ledger").status_code == 401
    # the merchant filters by store, kind, order number (reference), member and operator
    admin = bearer(staff_token)

    def ledger_query(query: str, headers=admin):  # type: ignore[no-untyped-def]
        response = client.get(f"/admin/api/ledger?{query}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    assert ledger_query("store=bj01")["total"] == 2
    assert ledger_query(f"store=sh01&member_id={member_id}")["total"] == 2
    assert ledger_query("member=13500000000")["total"] == 2
    assert ledger_query("kind=credit&per_page=100")["total"] == 6
    reference = ledger_query("store=bj01")["items"][0]["reference"]
    assert ledger_query(f"reference={reference}")["total"] == 2
    operator = ledger_query("store=bj01")["items"][0]["operator"]
    assert ledger_query(f"operator={operator}")["total"] == 6
    assert ledger_query("created_from=2000-01-01T00:00:00&created_to=2000-01-02T00:00:00")["total"] == 0
    # store staff see their store's entries only, whatever they ask for
    clerk = bearer(login(client, "sh01c"))
    assert ledger_query("per_page=100", clerk)["total"] == 4
    assert {i["store_code"] for i in ledger_query("per_page=100", clerk)["items"]} == {"sh01"}
    # and a filter naming another store is refused, not answered with an empty page (issue 15)
    refused = client.get("/admin/api/ledger?store=bj01", headers=clerk)
    assert refused.status_code == 403 and error_of(refused)["code"] == "store_out_of_scope"
    response = client.get("/admin/api/ledger?per_page=500", headers=admin)
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_request"
    assert count_rows("ledger_entry") == 6
    assert_ledger_ok()
