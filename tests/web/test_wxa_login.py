"""Mini-program login (POST /api/auth/wxa-login) and the member's own API (/api/me), through HTTP,
with the fake WeChat answering jscode2session and getuserphonenumber."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine

from mp_backend.ledger import service as ledger
from mp_backend.wechat.fake import FakeWeChatServer
from tests.conftest import assert_ledger_ok
from tests.web.conftest import bearer, error_of, member_ids, member_row, openids_of

WXA_APPID = "wxsandboxwxa000001"
MP_APPID = "wxsandboxmp0000001"


# ---------------------------------------------------------------------------------------------------
# Logging in


def test_first_login_creates_the_member_and_answers_a_token(client, fake: FakeWeChatServer):
    # given nobody has logged in yet
    assert member_ids() == []
    # when the mini program sends wx.login()'s code
    response = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    # then a token and a new, empty member come back, and the member is tied to the mini program's openid
    assert response.status_code == 200
    body = response.get_json()
    assert body["created"] is True
    assert isinstance(body["token"], str) and len(body["token"]) > 20
    member = body["member"]
    assert member_ids() == [member["id"]]
    assert member["balance"] == {"principal_fen": 0, "bonus_fen": 0, "held_fen": 0, "available_fen": 0}
    assert member["status"] == "active"
    assert openids_of(member["id"]) == {(WXA_APPID, "alice")}
    # and WeChat was asked once, with the mini program's appid and the code as sent
    calls = fake.calls_to("sns/jscode2session")
    assert len(calls) == 1
    assert (calls[0].args["appid"], calls[0].args["js_code"]) == (WXA_APPID, "sandbox-alice")


def test_second_login_finds_the_same_member(client):
    # given alice logged in once
    first = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"}).get_json()
    # when she logs in again (a new wx.login() code for the same openid)
    response = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    # then it is the same member, not a new one
    assert response.status_code == 200
    second = response.get_json()
    assert second["created"] is False
    assert second["member"]["id"] == first["member"]["id"]
    assert second["member"]["card_no"] == first["member"]["card_no"]
    assert member_ids() == [first["member"]["id"]]


def test_two_openids_are_two_members(client):
    # when two different people log in
    alice = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"}).get_json()
    bob = client.post("/api/auth/wxa-login", json={"code": "sandbox-bob"}).get_json()
    # then they are two members with their own tokens
    assert alice["member"]["id"] != bob["member"]["id"]
    assert alice["token"] != bob["token"]
    assert len(member_ids()) == 2


def test_unionid_links_the_official_account_and_the_mini_program(client, fake_with_unionid):
    # given alice logged in on an H5 page through the official account's OAuth (unionid sandbox-union-alice)
    start = client.get("/wechat/oauth", query_string={"next": "/static/member.html"})
    assert start.status_code == 302
    state = parse_qs(urlsplit(start.location).query)["state"][0]
    callback = client.get("/wechat/oauth/callback", query_string={"code": "sandbox-alice", "state": state})
    assert callback.status_code == 302
    h5_member = client.get("/api/me").get_json()
    # when she opens the mini program, whose login answers the same unionid
    response = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    # then she is the same member, now with an openid in each app
    assert response.status_code == 200
    body = response.get_json()
    assert body["created"] is False
    assert body["member"]["id"] == h5_member["id"]
    assert member_ids() == [h5_member["id"]]
    assert openids_of(h5_member["id"]) == {(MP_APPID, "alice"), (WXA_APPID, "alice")}
    assert member_row(h5_member["id"]).unionid == "sandbox-union-alice"


# ---------------------------------------------------------------------------------------------------
# /api/me


def test_me_shows_each_balance_bucket(client, wxa_login):
    # given a member with 10.00 paid in, 2.30 of gift money, and a 1.00 hold for a payment not yet settled
    login = wxa_login("alice")
    member_id = login["member"]["id"]
    ledger.credit(member_id, 1_000, key="me-p", operator="test")
    ledger.credit(member_id, 230, bucket="bonus", key="me-b", operator="test")
    ledger.hold(member_id, 100, key="me-h", operator="test")
    # when the member asks for themselves
    response = client.get("/api/me", headers=bearer(login["token"]))
    # then the buckets are exact: the hold took 1.00 proportionally (0.81 principal, 0.19 bonus,
    # 100 * 230 / 1230 = 18.7 to the nearest fen), and is shown apart from what is available
    assert response.status_code == 200
    me = response.get_json()
    assert me["balance"] == {"principal_fen": 919, "bonus_fen": 211, "held_fen": 100, "available_fen": 1_130}
    assert me["id"] == member_id
    assert me["card_no"] == login["member"]["card_no"]
    card = {k: me["card"][k] for k in ("card_no", "status", "level")}  # and the card type's benefits
    assert card == {"card_no": login["member"]["card_no"], "status": "active", "level": me["level"]["name"]}
    assert me["level"]["name"]
    assert me["points"] == 0
    assert_ledger_ok()


def test_a_token_only_ever_shows_its_own_member(client, wxa_login):
    # given alice and bob, bob with money
    alice = wxa_login("alice")
    bob = wxa_login("bob")
    ledger.credit(bob["member"]["id"], 5_000, key="bob-p", operator="test")
    # when alice asks for /api/me, in every way a client might try to name bob
    answers = [
        client.get("/api/me", headers=bearer(alice["token"])),
        client.get("/api/me", headers=bearer(alice["token"]), query_string={"member_id": bob["member"]["id"]}),
        client.get("/api/me", headers=bearer(alice["token"]), query_string={"id": bob["member"]["id"]}),
        client.get(f"/api/me/{bob['member']['id']}", headers=bearer(alice["token"])),
    ]
    # then she only ever sees herself
    for response in answers[:3]:
        assert response.status_code == 200
        me = response.get_json()
        assert me["id"] == alice["member"]["id"]
        assert me["balance"]["principal_fen"] == 0
    assert answers[3].status_code in (404, 405)
    # and bob's token shows bob (nothing is cached from the previous requests)
    me = client.get("/api/me", headers=bearer(bob["token"])).get_json()
    assert (me["id"], me["balance"]["principal_fen"]) == (bob["member"]["id"], 5_000)


def test_me_without_a_token_is_401(client):
    response = client.get("/api/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="signature-changed"),
        pytest.param(lambda t: t.replace(".", ".x", 1), id="payload-changed"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
    ],
)
def test_tampered_token_is_401_token_invalid(client, wxa_login, tamper):
    # given a valid member token, altered
    token = tamper(wxa_login("alice")["token"])
    # when it is used
    response = client.get("/api/me", headers=bearer(token))
    # then it is refused
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


def test_token_of_a_member_forged_with_another_key_is_refused(client, app, wxa_login):
    # given a token signed for the same member id but with a key that is not ours
    from itsdangerous import URLSafeTimedSerializer

    member_id = wxa_login("alice")["member"]["id"]
    forged = URLSafeTimedSerializer("not-our-secret", salt="mp-backend/member").dumps({"member_id": member_id})
    # when it is used, then it is refused
    response = client.get("/api/me", headers=bearer(forged))
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


def test_expired_token_is_401_token_expired(client, app, wxa_login):
    # given a token issued now
    token = wxa_login("alice")["token"]
    max_age = app.config["MEMBER_TOKEN_MAX_AGE"]
    # when it is used a minute after its life ends
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=max_age + 60), tick=False):
        response = client.get("/api/me", headers=bearer(token))
    # then it is refused as expired
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_expired"


def test_token_still_valid_just_before_it_expires(client, app, wxa_login):
    token = wxa_login("alice")["token"]
    max_age = app.config["MEMBER_TOKEN_MAX_AGE"]
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=max_age - 60), tick=False):
        response = client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200


def test_staff_token_is_not_a_member_token(client, org, make_member):
    # given a staff member's valid console token
    login = client.post("/admin/api/auth/login", json={"username": "admin", "password": "password-1"})
    staff_token = login.get_json()["token"]
    make_member()  # a member whose id may equal the staff id
    # when it is used on the members' API, then it is refused
    response = client.get("/api/me", headers=bearer(staff_token))
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


def test_member_token_is_not_a_staff_token(client, org, wxa_login):
    # given a member's valid token
    token = wxa_login("alice")["token"]
    # when it is used on the console's API, then it is refused
    response = client.get("/admin/api/me", headers=bearer(token))
    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


# ---------------------------------------------------------------------------------------------------
# WeChat says no


@pytest.mark.parametrize(
    ("js_code", "steer", "status", "code"),
    [
        pytest.param("wx-code-of-another-app", None, 400, "wechat_code_invalid", id="unknown-code-40029"),
        pytest.param(
            "sandbox-alice", lambda fake: fake.fail_code("sandbox-alice", 40029), 400, "wechat_code_invalid", id="40029"
        ),
        pytest.param(
            "sandbox-alice",
            lambda fake: fake.fail_code("sandbox-alice", 40163),
            400,
            "wechat_code_invalid",
            id="used-40163",
        ),
        pytest.param(
            "sandbox-alice",
            lambda fake: fake.fail_next("sns/jscode2session", 45011),
            429,
            "wechat_rate_limited",
            id="45011",
        ),
        pytest.param(
            "sandbox-alice",
            lambda fake: fake.fail_next("sns/jscode2session", status=500),
            502,
            "wechat_unavailable",
            id="http-500",
        ),
        pytest.param(
            "sandbox-alice",
            lambda fake: fake.fail_next("sns/jscode2session", -1, errmsg="system error"),
            502,
            "wechat_unavailable",
            id="system-error",
        ),
    ],
)
def test_jscode2session_errors_create_no_member(client, fake: FakeWeChatServer, js_code, steer, status, code):
    # given WeChat will refuse the code (or fail)
    if steer is not None:
        steer(fake)
    # when the mini program logs in
    response = client.post("/api/auth/wxa-login", json={"code": js_code})
    # then the member gets a stable error, and nobody is created
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert member_ids() == []
    assert len(fake.calls_to("sns/jscode2session")) == 1


@pytest.mark.parametrize("app_overrides", [{"WECHAT_HTTP_TIMEOUT": 0.3}])
def test_jscode2session_timeout_is_502(client, fake: FakeWeChatServer):
    # given WeChat answers later than our timeout
    fake.delay("sns/jscode2session", 1.0)
    # when the mini program logs in
    response = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    # then it is 502 wechat_unavailable and nobody is created
    assert response.status_code == 502
    assert error_of(response)["code"] == "wechat_unavailable"
    assert member_ids() == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"code": ""}, id="empty"),
        pytest.param({"code": None}, id="null"),
        pytest.param({"code": 12345}, id="number"),
        pytest.param({"code": ["sandbox-alice"]}, id="list"),
        pytest.param({"code": {"v": "sandbox-alice"}}, id="object"),
        pytest.param({"code": "x" * 129}, id="too-long"),
        pytest.param(["sandbox-alice"], id="not-an-object"),
    ],
)
def test_bad_login_body_is_400_invalid_request(client, fake: FakeWeChatServer, body):
    # when the body has no usable code
    response = client.post("/api/auth/wxa-login", json=body)
    # then it is refused before WeChat is asked
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"
    assert fake.calls_to("sns/jscode2session") == []
    assert member_ids() == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param("code=sandbox-alice", "application/x-www-form-urlencoded", id="form"),
        pytest.param("{not json", "application/json", id="broken-json"),
        pytest.param("", "application/json", id="empty-body"),
    ],
)
def test_login_body_that_is_not_json_is_a_4xx_json_error(client, fake: FakeWeChatServer, data, content_type):
    response = client.post("/api/auth/wxa-login", data=data, content_type=content_type)
    assert 400 <= response.status_code < 500
    error_of(response)
    assert member_ids() == []


def test_blank_code_is_refused_without_asking_wechat(client, fake: FakeWeChatServer):
    response = client.post("/api/auth/wxa-login", json={"code": "   "})
    assert response.status_code == 400
    assert error_of(response)["code"] in ("invalid_request", "wechat_code_invalid")
    assert fake.calls_to("sns/jscode2session") == []
    assert member_ids() == []


# ---------------------------------------------------------------------------------------------------
# Phone number


def test_bind_phone_from_getuserphonenumber(client, fake: FakeWeChatServer, wxa_login):
    # given a logged-in member without a phone
    login = wxa_login("alice")
    assert login["member"]["phone"] is None
    # when the mini program sends the getPhoneNumber button's code
    response = client.post("/api/me/phone", json={"code": "sandbox-phone-13800138000"}, headers=bearer(login["token"]))
    # then the number WeChat gave is the member's
    assert response.status_code == 200
    assert response.get_json()["phone"] == "13800138000"
    assert client.get("/api/me", headers=bearer(login["token"])).get_json()["phone"] == "13800138000"
    assert member_row(login["member"]["id"]).phone == "13800138000"
    # and WeChat was asked with the mini program's access token and the code
    calls = fake.calls_to("wxa/business/getuserphonenumber")
    assert len(calls) == 1
    assert calls[0].json == {"code": "sandbox-phone-13800138000"}


def test_bind_phone_needs_a_member_token(client, fake: FakeWeChatServer):
    response = client.post("/api/me/phone", json={"code": "sandbox-phone-13800138000"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert fake.calls_to("wxa/business/getuserphonenumber") == []


def test_bind_phone_with_a_code_wechat_refuses(client, fake: FakeWeChatServer, wxa_login):
    login = wxa_login("alice")
    response = client.post("/api/me/phone", json={"code": "not-a-phone-code"}, headers=bearer(login["token"]))
    assert response.status_code == 400
    assert error_of(response)["code"] == "wechat_code_invalid"
    assert member_row(login["member"]["id"]).phone is None


def test_a_phone_bound_to_one_member_is_not_given_to_another(client, wxa_login):
    alice, bob = wxa_login("alice"), wxa_login("bob")
    first = client.post("/api/me/phone", json={"code": "sandbox-phone-13800138000"}, headers=bearer(alice["token"]))
    assert first.status_code == 200
    response = client.post("/api/me/phone", json={"code": "sandbox-phone-13800138000"}, headers=bearer(bob["token"]))
    assert response.status_code == 409
    assert error_of(response)["code"] == "phone_taken"
    assert member_row(bob["member"]["id"]).phone is None


def test_a_login_code_used_twice_is_refused_the_second_time(client, fake: FakeWeChatServer):
    # given a code from wx.login(), as WeChat issues them: good for one exchange
    code = fake.issue_login_code("alice")
    first = client.post("/api/auth/wxa-login", json={"code": code})
    # when it is sent again (a replayed or intercepted login)
    again = client.post("/api/auth/wxa-login", json={"code": code})
    # then WeChat's 40163 is a 400 wechat_code_invalid, and no second member appears
    assert first.status_code == 200
    assert again.status_code == 400
    assert error_of(again)["code"] == "wechat_code_invalid"
    assert member_ids() == [first.get_json()["member"]["id"]]
