"""Official-account OAuth for the H5 pages (/wechat/oauth): the redirect to WeChat's authorize page,
the callback, the session cookie, and what must never happen (a forged state, an open redirect)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mp_backend.wechat.fake import FakeWeChatServer
from tests.web.conftest import PUBLIC_BASE_URL, error_of, member_ids, member_row, openids_of

MP_APPID = "wxsandboxmp0000001"
CALLBACK = f"{PUBLIC_BASE_URL}/wechat/oauth/callback"


def start(client, **query: str) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """GET /wechat/oauth; returns WeChat's authorize URL (without its fragment) and its query."""
    response = client.get("/wechat/oauth", query_string=query)
    assert response.status_code == 302, response.get_data(as_text=True)
    url, _, fragment = response.location.partition("#")
    assert fragment == "wechat_redirect"
    args = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return url, args


def authorize(fake: FakeWeChatServer, authorize_url: str, openid: str) -> tuple[str, dict[str, str]]:
    """The member agrees on the (fake) WeChat page; returns where WeChat sends them back (path, query)."""
    answer = requests.get(authorize_url, params={"openid": openid}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return back.path, {k: v[0] for k, v in parse_qs(back.query).items()}


def test_oauth_redirects_to_wechat_with_our_appid_callback_and_a_state(client, fake: FakeWeChatServer):
    # when an H5 page without a session starts the login
    url, args = start(client, next="/static/member.html")
    # then the member is sent to WeChat's authorize page, for our app, back to our public callback
    assert url.startswith(f"{fake.oauth_base_url}oauth2/authorize?")
    assert args["appid"] == MP_APPID
    assert args["redirect_uri"] == CALLBACK
    assert args["response_type"] == "code"
    assert args["scope"] == "snsapi_base"
    assert len(args["state"]) >= 16
    # and every login gets its own state
    assert start(client.application.test_client(), next="/")[1]["state"] != args["state"]


def test_oauth_callback_logs_in_with_a_session_cookie(client, fake: FakeWeChatServer):
    # given the member went to WeChat and agreed as openid "alice"
    url, args = start(client, next="/static/member.html")
    path, back = authorize(fake, url, "alice")
    assert back == {"code": "sandbox-alice", "state": args["state"]}
    # when WeChat sends them back
    response = client.get(path, query_string=back)
    # then they land on the page they asked for, with a session cookie
    assert response.status_code == 302
    assert response.location == "/static/member.html"
    assert "session=" in response.headers.get("Set-Cookie", "")
    # and the cookie alone (no bearer token) is their login on the members' API
    me = client.get("/api/me")
    assert me.status_code == 200
    member_id = me.get_json()["id"]
    assert member_ids() == [member_id]
    assert openids_of(member_id) == {(MP_APPID, "alice")}
    # and WeChat was asked to exchange that code, with our appid and secret
    [call] = fake.calls_to("sns/oauth2/access_token")
    assert (call.args["appid"], call.args["code"]) == (MP_APPID, "sandbox-alice")


def test_cookie_is_per_browser(client, fake: FakeWeChatServer):
    # given alice logged in in one browser
    url, args = start(client)
    client.get("/wechat/oauth/callback", query_string={"code": "sandbox-alice", "state": args["state"]})
    assert client.get("/api/me").status_code == 200
    # when another browser asks, then it is not logged in
    other = client.application.test_client()
    assert other.get("/api/me").status_code == 401


def test_oauth_without_next_lands_on_the_member_centre(client, fake: FakeWeChatServer):
    url, _args = start(client)
    path, back = authorize(fake, url, "alice")
    response = client.get(path, query_string=back)
    assert response.status_code == 302
    assert response.location == "/static/member.html"


def test_oauth_twice_is_the_same_member(client, fake: FakeWeChatServer):
    ids = []
    for _ in range(2):
        url, _args = start(client)
        path, back = authorize(fake, url, "alice")
        assert client.get(path, query_string=back).status_code == 302
        ids.append(client.get("/api/me").get_json()["id"])
    assert ids[0] == ids[1]
    assert member_ids() == [ids[0]]


def test_snsapi_userinfo_stores_the_nickname_as_name(client, fake: FakeWeChatServer):
    # when the member logs in with the userinfo scope
    url, args = start(client, next="/static/member.html", scope="snsapi_userinfo")
    assert args["scope"] == "snsapi_userinfo"
    path, back = authorize(fake, url, "alice")
    assert client.get(path, query_string=back).status_code == 302
    # then the WeChat nickname is their name
    me = client.get("/api/me").get_json()
    assert me["name"] == "沙箱用户 alice"
    assert member_row(me["id"]).name == "沙箱用户 alice"
    assert len(fake.calls_to("sns/userinfo")) == 1


def test_snsapi_base_does_not_ask_for_userinfo(client, fake: FakeWeChatServer):
    url, _args = start(client)
    path, back = authorize(fake, url, "alice")
    client.get(path, query_string=back)
    assert client.get("/api/me").get_json()["name"] == ""
    assert fake.calls_to("sns/userinfo") == []


def test_unknown_scope_is_refused(client, fake: FakeWeChatServer):
    response = client.get("/wechat/oauth", query_string={"scope": "snsapi_login"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_scope"


@pytest.mark.parametrize(
    "state",
    [pytest.param("forged-state-000000", id="wrong"), pytest.param("", id="empty"), pytest.param(None, id="missing")],
)
def test_wrong_state_is_400_and_logs_nobody_in(client, fake: FakeWeChatServer, state):
    # given a login was started in this browser
    start(client, next="/static/member.html")
    # when the callback arrives with a state that is not the one we sent (a forged login link)
    query = {"code": "sandbox-mallory"}
    if state is not None:
        query["state"] = state
    response = client.get("/wechat/oauth/callback", query_string=query)
    # then it is refused, WeChat is not asked, and there is no session
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_state_invalid"
    assert fake.calls_to("sns/oauth2/access_token") == []
    assert member_ids() == []
    assert client.get("/api/me").status_code == 401


def test_callback_without_a_started_login_is_400(client, fake: FakeWeChatServer):
    # given a browser that never started a login (a login link sent by someone else)
    other = client.application.test_client()
    _url, args = start(other)
    # when it follows a callback with another browser's state
    response = client.get("/wechat/oauth/callback", query_string={"code": "sandbox-mallory", "state": args["state"]})
    # then it is refused
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_state_invalid"
    assert member_ids() == []


def test_a_state_is_good_for_one_callback_only(client, fake: FakeWeChatServer):
    url, args = start(client)
    path, back = authorize(fake, url, "alice")
    assert client.get(path, query_string=back).status_code == 302
    # when the same callback is replayed
    again = client.get(path, query_string=back)
    # then it is refused
    assert again.status_code == 400
    assert error_of(again)["code"] == "oauth_state_invalid"


def test_a_denied_authorization_is_400(client, fake: FakeWeChatServer):
    # WeChat sends the member back with only the state when they refuse
    _url, args = start(client)
    response = client.get("/wechat/oauth/callback", query_string={"state": args["state"]})
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_denied"
    assert member_ids() == []


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "http://evil.example/static/member.html",
        "//evil.example",
        "//evil.example/static/member.html",
        "/\\evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "javascript:alert(1)",
        "evil.example/path",
        "https:evil.example",
    ],
)
def test_next_off_site_is_400_invalid_next(client, fake: FakeWeChatServer, target):
    # when a login is started with a "next" that leaves the site
    response = client.get("/wechat/oauth", query_string={"next": target})
    # then it is refused before anything is sent to WeChat (no open redirect)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_next"
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", " //evil.example", "/%2F/evil.example"],
)
def test_tricky_next_never_redirects_off_site(client, fake: FakeWeChatServer, target):
    # given a "next" that a browser might read as another host (browsers drop tabs and newlines)
    response = client.get("/wechat/oauth", query_string={"next": target})
    if response.status_code == 400:
        assert error_of(response)["code"] == "invalid_next"
        return
    # when it is accepted, then the final redirect, read the way a browser reads it, stays on our site
    assert response.status_code == 302
    args = {k: v[0] for k, v in parse_qs(urlsplit(response.location.partition("#")[0]).query).items()}
    final = client.get("/wechat/oauth/callback", query_string={"code": "sandbox-alice", "state": args["state"]})
    assert final.status_code == 302
    as_browser = "".join(ch for ch in final.headers["Location"] if ch not in "\t\n\r").strip().replace("\\", "/")
    resolved = urlsplit(requests.compat.urljoin(f"{PUBLIC_BASE_URL}/static/", as_browser))
    assert resolved.netloc == urlsplit(PUBLIC_BASE_URL).netloc, final.headers["Location"]


@pytest.mark.parametrize(
    ("steer", "status", "code"),
    [
        pytest.param(lambda fake: fake.fail_code("sandbox-alice", 40029), 400, "wechat_code_invalid", id="40029"),
        pytest.param(lambda fake: fake.fail_code("sandbox-alice", 40163), 400, "wechat_code_invalid", id="used-40163"),
        pytest.param(
            lambda fake: fake.fail_next("sns/oauth2/access_token", status=500), 502, "wechat_unavailable", id="http-500"
        ),
        pytest.param(
            lambda fake: fake.fail_next("sns/oauth2/access_token", -1, errmsg="system error"),
            502,
            "wechat_unavailable",
            id="system-error",
        ),
    ],
)
def test_oauth_code_errors_create_no_member(client, fake: FakeWeChatServer, steer, status, code):
    # given WeChat will refuse (or fail on) the code
    url, args = start(client)
    path, back = authorize(fake, url, "alice")
    steer(fake)
    # when the member comes back
    response = client.get(path, query_string=back)
    # then the error is a JSON one with a stable code, and nobody is created or logged in
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert member_ids() == []
    assert client.get("/api/me").status_code == 401


def test_userinfo_failure_creates_no_member(client, fake: FakeWeChatServer):
    url, _args = start(client, scope="snsapi_userinfo")
    path, back = authorize(fake, url, "alice")
    fake.fail_next("sns/userinfo", status=500)
    response = client.get(path, query_string=back)
    assert response.status_code == 502
    assert error_of(response)["code"] == "wechat_unavailable"
    assert member_ids() == []


@pytest.mark.parametrize("app_overrides", [{"WECHAT_HTTP_TIMEOUT": 0.3}])
def test_oauth_timeout_is_502(client, fake: FakeWeChatServer):
    url, _args = start(client)
    path, back = authorize(fake, url, "alice")
    fake.delay("sns/oauth2/access_token", 1.0)
    response = client.get(path, query_string=back)
    assert response.status_code == 502
    assert error_of(response)["code"] == "wechat_unavailable"
    assert member_ids() == []


@pytest.mark.parametrize(
    "target",
    [
        "/a\r\nSet-Cookie: session=forged",
        "/a\nLocation: https://evil.example",
        "/a\x00b",
        "/member//evil.example",
        "/" + "a" * 600,
    ],
    ids=["crlf-set-cookie", "lf-location", "nul", "double-slash", "too-long"],
)
def test_next_with_control_characters_or_double_slashes_is_invalid_next(client, fake: FakeWeChatServer, target):
    # given a "next" that would split the Location header of the callback's redirect
    response = client.get("/wechat/oauth", query_string={"next": target})
    # then it is refused at once, and nobody can be logged in with it
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_next"
    assert "Set-Cookie: session=forged" not in str(response.headers)
    assert member_ids() == []


@pytest.mark.parametrize("state", ["é", "x" * 5_000, "\x00"])
def test_callback_with_an_odd_state_is_400_never_500(client, fake: FakeWeChatServer, state):
    start(client, next="/static/member.html")
    response = client.get("/wechat/oauth/callback", query_string={"code": "sandbox-alice", "state": state})
    assert response.status_code == 400
    assert error_of(response)["code"] == "oauth_state_invalid"
    assert member_ids() == []


def test_session_cookie_is_secure_httponly_and_expires_with_the_member_token(client, fake: FakeWeChatServer, app):
    # given the site is served over https (PUBLIC_BASE_URL) and a member logs in through OAuth
    url, args = start(client, next="/static/member.html")
    path, back = authorize(fake, url, "alice")
    response = client.get(path, query_string=back)
    # then the session cookie is Secure and HttpOnly, and expires no later than a member token would
    cookie = next(value for value in response.headers.getlist("Set-Cookie") if value.startswith("session="))
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "secure" in attributes and "httponly" in attributes
    expires = parsedate_to_datetime(next(part.split("=", 1)[1] for part in attributes if part.startswith("expires=")))
    lifetime = (expires - datetime.now(UTC)).total_seconds()
    assert 0 < lifetime <= app.config["MEMBER_TOKEN_MAX_AGE"] + 5
