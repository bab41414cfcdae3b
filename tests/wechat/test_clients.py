"""Clients against the fake: base URLs, stable tokens, shared storage, refresh-and-retry, error mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException, WeChatPayException

from mp_backend.errors import AppError
from mp_backend.wechat import (
    get_phone_number,
    jscode2session,
    mp_client,
    oauth_client,
    pay_client,
    translate_errors,
    wxa_client,
)
from mp_backend.wechat.errors import UpstreamError, WeChatCodeInvalid, WeChatLoginBlocked, WeChatRateLimited
from mp_backend.wechat.fake import FakeSettings, FakeWeChatServer

from .conftest import make_wechat_app


def token_fetches(fake: FakeWeChatServer) -> list[dict[str, Any]]:
    return [call.json for call in fake.calls_to("cgi-bin/stable_token")]


def tokens_sent(fake: FakeWeChatServer, path: str) -> list[str | None]:
    return [call.args.get("access_token") for call in fake.calls_to(path)]


# -- tokens ------------------------------------------------------------------------------------


def test_stable_token_is_fetched_once_then_cached(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    # when
    first = mp_client().user.get("alice")
    second = mp_client().user.get("bob")

    # then
    assert (first["openid"], second["openid"]) == ("alice", "bob")
    assert token_fetches(fake) == [
        {"grant_type": "client_credential", "appid": "wxsandboxmp0000001", "secret": "sandbox-mp-secret",
         "force_refresh": False}
    ]  # fmt: skip
    assert fake.calls_to("cgi-bin/token") == []  # the classic endpoint is never used
    sent = tokens_sent(fake, "cgi-bin/user/info")
    assert len(set(sent)) == 1 and sent[0]


def test_each_app_has_its_own_token(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    mp_client().user.get("alice")
    wxa_client().wxa.code_to_session("sandbox-alice")  # wechatpy's own call, with its own API_BASE_URL
    get_phone_number("sandbox-phone-13800138000")

    assert [call["appid"] for call in token_fetches(fake)] == ["wxsandboxmp0000001", "wxsandboxwxa000001"]


def test_every_api_group_is_sent_to_the_configured_root(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    # WeChatWxa declares API_BASE_URL = "https://api.weixin.qq.com/"; WeChatClient uses ".../cgi-bin/".
    session = wxa_client().wxa.code_to_session("sandbox-alice")
    menu = {"button": [{"type": "click", "name": "余额", "key": "MY_BALANCE"}]}
    mp_client().menu.create(menu)

    assert session["openid"] == "alice"
    assert [call.path for call in fake.calls] == [
        "cgi-bin/stable_token",
        "sns/jscode2session",
        "cgi-bin/stable_token",
        "cgi-bin/menu/create",
    ]


def test_expired_token_is_refreshed_once_and_the_call_retried(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    # given
    mp_client().user.get("alice")
    fake.expire_tokens()

    # when
    result = mp_client().user.get("alice")

    # then
    assert result["openid"] == "alice"
    assert [call["force_refresh"] for call in token_fetches(fake)] == [False, False]
    old, refused, retried = tokens_sent(fake, "cgi-bin/user/info")
    assert old == refused and retried != old
    # and the new token is the one kept for the next call
    mp_client().user.get("bob")
    assert tokens_sent(fake, "cgi-bin/user/info")[-1] == retried
    assert len(token_fetches(fake)) == 2


def test_a_token_refused_again_after_refresh_is_not_retried_forever(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    # given: WeChat keeps calling the token invalid although the stable endpoint keeps returning it
    mp_client().user.get("alice")
    fake.fail_next("cgi-bin/user/info", errcode=40001, times=100)

    # when
    with pytest.raises(WeChatClientException) as refused:
        mp_client().user.get("alice")

    # then: one refresh (normal mode gave the same token, so one forced refresh), one retry, then up
    assert refused.value.errcode == 40001
    assert [call["force_refresh"] for call in token_fetches(fake)] == [False, False, True]
    assert len(fake.calls_to("cgi-bin/user/info")) == 3

    # and a second failure within 30 s asks normally but does not force again (WeChat rations them)
    with pytest.raises(WeChatClientException):
        mp_client().user.get("alice")
    assert [call["force_refresh"] for call in token_fetches(fake)] == [False, False, True, False]
    assert len(fake.calls_to("cgi-bin/user/info")) == 5


def test_other_errors_do_not_refresh(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    fake.fail_next("cgi-bin/user/info", errcode=40003)

    with pytest.raises(WeChatClientException) as refused:
        mp_client().user.get("alice")

    assert refused.value.errcode == 40003
    assert len(token_fetches(fake)) == 1
    assert len(fake.calls_to("cgi-bin/user/info")) == 1


def test_concurrent_callers_fetch_one_token(
    wechat_app: Flask, fake: FakeWeChatServer, run_threads: Callable[[int, Callable[[], Any]], list[Any]]
) -> None:
    # given: a slow token endpoint, so every thread finds the storage empty
    fake.delay("cgi-bin/stable_token", 0.3)
    client = mp_client()

    # when
    results = run_threads(8, lambda: client.user.get("alice"))

    # then
    assert all(isinstance(result, dict) and result["openid"] == "alice" for result in results), results
    assert len(token_fetches(fake)) == 1
    assert len(set(tokens_sent(fake, "cgi-bin/user/info"))) == 1


def test_apps_in_one_process_share_the_token_without_redis(fake: FakeWeChatServer) -> None:
    first, second = make_wechat_app(fake), make_wechat_app(fake)

    with first.app_context():
        mp_client().user.get("alice")
    with second.app_context():
        mp_client().user.get("bob")

    assert len(token_fetches(fake)) == 1


def test_token_is_not_shared_with_another_wechat(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    # A second fake is "another WeChat": a token from the first is worthless there.
    with FakeWeChatServer(FakeSettings()) as other:
        mp_client().user.get("alice")
        with make_wechat_app(other).app_context():
            mp_client().user.get("alice")
        assert len(token_fetches(other)) == 1
        assert other.calls_to("cgi-bin/user/info")[0].args["access_token"] != tokens_sent(fake, "cgi-bin/user/info")[0]


# -- Redis: two app instances, one token ------------------------------------------------------------


@pytest.fixture
def redis_apps(fake: FakeWeChatServer, redis_url: str) -> Any:
    apps = (make_wechat_app(fake, REDIS_URL=redis_url), make_wechat_app(fake, REDIS_URL=redis_url))
    yield apps
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter(match=f"wechatpy:*{fake.origin}*"):
        connection.delete(key)
    connection.close()


def test_two_app_instances_share_one_token_through_redis(fake: FakeWeChatServer, redis_apps: Any) -> None:
    first, second = redis_apps

    with first.app_context():
        mp_client().user.get("alice")
    with second.app_context():
        mp_client().user.get("bob")

    assert len(token_fetches(fake)) == 1
    assert len(set(tokens_sent(fake, "cgi-bin/user/info"))) == 1


def test_a_refresh_by_one_instance_serves_the_other(fake: FakeWeChatServer, redis_apps: Any) -> None:
    first, second = redis_apps
    with first.app_context():
        mp_client().user.get("alice")
    fake.expire_tokens()

    with first.app_context():
        mp_client().user.get("alice")  # refused, refreshed, retried
    with second.app_context():
        mp_client().user.get("bob")  # uses the refreshed token at once

    assert len(token_fetches(fake)) == 2
    old, refused, retried, other_instance = tokens_sent(fake, "cgi-bin/user/info")
    assert old == refused != retried == other_instance


def test_instances_refresh_under_one_redis_lock(
    fake: FakeWeChatServer, redis_apps: Any, run_threads: Callable[[int, Callable[[], Any]], list[Any]]
) -> None:
    first, second = redis_apps
    fake.delay("cgi-bin/stable_token", 0.3)
    with first.app_context():
        one = mp_client()
    with second.app_context():
        two = mp_client()
    clients = [one, two] * 4

    results = run_threads(8, lambda: clients.pop().user.get("alice"))

    assert all(isinstance(result, dict) for result in results), results
    assert len(token_fetches(fake)) == 1


# -- jscode2session and the phone number ------------------------------------------------------------


def test_jscode2session_returns_the_openid_without_an_access_token(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    session = jscode2session("sandbox-alice")

    assert session["openid"] == "alice"
    assert session["session_key"]
    assert "unionid" not in session
    (call,) = fake.calls
    assert call.path == "sns/jscode2session"
    assert "access_token" not in call.args
    assert call.args["appid"] == "wxsandboxwxa000001"


@pytest.mark.parametrize("fake_settings", [FakeSettings(with_unionid=True)])
def test_jscode2session_returns_the_unionid_when_there_is_one(wechat_app: Flask) -> None:
    assert jscode2session("sandbox-alice") == {
        "openid": "alice",
        "session_key": jscode2session("sandbox-alice")["session_key"],
        "unionid": "sandbox-union-alice",
    }


def assert_app_error(error: AppError, cls: type[AppError], status: int, code: str) -> None:
    assert type(error) is cls
    assert (error.status, error.code) == (status, code)


def test_jscode2session_invalid_code(wechat_app: Flask) -> None:
    with pytest.raises(AppError) as refused:
        jscode2session("not-a-sandbox-code")
    assert_app_error(refused.value, WeChatCodeInvalid, 400, "wechat_code_invalid")


def test_jscode2session_used_code(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    fake.fail_code("sandbox-alice", 40163)
    with pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, WeChatCodeInvalid, 400, "wechat_code_invalid")


def test_jscode2session_rate_limited(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    fake.fail_next("sns/jscode2session", errcode=45011)
    with pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, WeChatRateLimited, 429, "wechat_rate_limited")


def test_jscode2session_blocked_user(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    fake.fail_next("sns/jscode2session", errcode=40226)
    with pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, WeChatLoginBlocked, 403, "wechat_login_blocked")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_jscode2session_http_error(wechat_app: Flask, fake: FakeWeChatServer, status: int) -> None:
    fake.fail_next("sns/jscode2session", status=status)
    with pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, UpstreamError, 502, "wechat_unavailable")


def test_jscode2session_other_wechat_error_is_upstream(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    fake.fail_next("sns/jscode2session", errcode=-1, errmsg="system error")
    with pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, UpstreamError, 502, "wechat_unavailable")


def test_jscode2session_timeout(fake: FakeWeChatServer) -> None:
    fake.delay("sns/jscode2session", 1.5)
    with make_wechat_app(fake, WECHAT_HTTP_TIMEOUT=0.3).app_context(), pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, UpstreamError, 502, "wechat_unavailable")


def test_jscode2session_unreachable(fake: FakeWeChatServer) -> None:
    nowhere = make_wechat_app(fake, WECHAT_API_BASE_URL="http://127.0.0.1:9/wechat/", WECHAT_HTTP_TIMEOUT=0.5)
    with nowhere.app_context(), pytest.raises(AppError) as refused:
        jscode2session("sandbox-alice")
    assert_app_error(refused.value, UpstreamError, 502, "wechat_unavailable")


@pytest.mark.parametrize("code", ["", "   ", "x" * 300])
def test_jscode2session_refuses_junk_without_calling_wechat(
    wechat_app: Flask, fake: FakeWeChatServer, code: str
) -> None:
    with pytest.raises(WeChatCodeInvalid):
        jscode2session(code)
    assert fake.calls == []


def test_phone_number(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    phone = get_phone_number("sandbox-phone-13800138000")

    assert phone == {"phone_number": "13800138000", "pure_phone_number": "13800138000", "country_code": "86"}
    (call,) = fake.calls_to("wxa/business/getuserphonenumber")
    assert call.json == {"code": "sandbox-phone-13800138000"}


def test_phone_number_invalid_code(wechat_app: Flask) -> None:
    with pytest.raises(WeChatCodeInvalid):
        get_phone_number("sandbox-phone-abc")


# -- OAuth ------------------------------------------------------------------------------------------


def test_oauth_round_trip_through_the_fake_authorize_page(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    # given: the member agrees on the (fake) authorize page
    oauth = oauth_client("https://member.example.com/wechat/oauth?next=%2Fr%2FR1", "snsapi_userinfo", state="s1")
    assert oauth.authorize_url.startswith(fake.oauth_base_url + "oauth2/authorize?appid=wxsandboxmp0000001&")
    page = requests.get(oauth.authorize_url.split("#")[0], timeout=5)
    assert page.status_code == 200 and 'name="openid"' in page.text
    agreed = requests.post(
        oauth.authorize_url.split("#")[0],
        data={
            "appid": "wxsandboxmp0000001",
            "redirect_uri": oauth.redirect_uri,
            "scope": "snsapi_userinfo",
            "state": "s1",
            "openid": "carol",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert agreed.status_code == 302
    location = agreed.headers["Location"]
    assert location == "https://member.example.com/wechat/oauth?next=%2Fr%2FR1&code=sandbox-carol&state=s1"

    # when
    token = oauth.fetch_access_token("sandbox-carol")
    profile = oauth.get_user_info()

    # then
    assert token["openid"] == "carol" and token["scope"] == "snsapi_userinfo"
    assert profile["openid"] == "carol"


def test_oauth_base_scope_cannot_read_the_profile(wechat_app: Flask) -> None:
    oauth = oauth_client("https://member.example.com/wechat/oauth")
    oauth.fetch_access_token("sandbox-dave")
    with pytest.raises(WeChatOAuthException) as refused:
        oauth.get_user_info()
    assert refused.value.errcode == 48001


def test_oauth_invalid_code(wechat_app: Flask) -> None:
    with pytest.raises(WeChatOAuthException) as refused:
        oauth_client("https://member.example.com/wechat/oauth").fetch_access_token("forged")
    assert refused.value.errcode == 40029


# -- WeChat Pay -------------------------------------------------------------------------------------


def create_order(appid: str, out_trade_no: str = "R202401010001", total_fee: int = 10000) -> dict[str, Any]:
    return pay_client(appid).order.create(
        trade_type="JSAPI",
        body="会员充值 100 元",
        total_fee=total_fee,
        notify_url="https://member.example.com/wechat/pay/notify",
        client_ip="127.0.0.1",  # always pass it: wechatpy otherwise resolves api.mch.weixin.qq.com
        user_id="alice",
        out_trade_no=out_trade_no,
    )


def test_pay_unifiedorder_query_close(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    created = create_order("wxsandboxwxa000001")
    assert created["prepay_id"].startswith("wx")
    assert fake.orders["R202401010001"].appid == "wxsandboxwxa000001"

    assert pay_client("wxsandboxwxa000001").order.query(out_trade_no="R202401010001")["trade_state"] == "NOTPAY"
    fake.mark_paid("R202401010001")
    paid = pay_client("wxsandboxwxa000001").order.query(out_trade_no="R202401010001")
    assert (paid["trade_state"], paid["total_fee"]) == ("SUCCESS", "10000")

    with pytest.raises(WeChatPayException) as refused:
        pay_client("wxsandboxwxa000001").order.close("R202401010001")
    assert refused.value.errcode == "ORDERPAID"


def test_pay_client_refuses_a_foreign_appid(wechat_app: Flask) -> None:
    with pytest.raises(ValueError):
        pay_client("wx0000000000000bad")


def test_pay_with_a_wrong_key_is_refused_by_the_fake(fake: FakeWeChatServer) -> None:
    with make_wechat_app(fake, WECHAT_PAY_API_KEY="x" * 32).app_context(), pytest.raises(WeChatPayException) as refused:
        create_order("wxsandboxmp0000001")
    assert (refused.value.return_code, refused.value.return_msg) == ("FAIL", "签名错误")
    assert fake.orders == {}


def test_forced_refreshes_stop_at_the_daily_cap_and_answer_502(fake: FakeWeChatServer) -> None:
    # given an app that may force 2 refreshes a day (no 30 s spacing, to reach the cap in one test)
    app = make_wechat_app(fake, WECHAT_FORCED_REFRESH_DAILY_CAP=2, WECHAT_FORCED_REFRESH_INTERVAL=0)
    with app.app_context():
        mp_client().user.get("alice")
        # and WeChat keeps refusing the token the stable endpoint keeps handing back
        fake.fail_next("cgi-bin/user/info", errcode=40001, times=100)
        # when the refusal comes four times
        for _ in range(4):
            with pytest.raises(AppError) as refused, translate_errors("user info"):
                mp_client().user.get("alice")
            # then each time it is a clean 502 wechat_unavailable
            assert (refused.value.status, refused.value.code) == (502, "wechat_unavailable")
    # and only the first two forced a refresh: past the cap we stop forcing
    forced = [call["force_refresh"] for call in token_fetches(fake)]
    assert forced.count(True) == 2
    assert forced == [False, False, True, False, True, False, False]  # normal mode first, every time
