"""No secret reaches a log line (DESIGN §6): WeChat unreachable, every logger at DEBUG, and the app's
secrets, tokens, login codes and the pay key are nowhere in what was logged."""

from __future__ import annotations

import logging

import pytest

from mp_backend.errors import AppError
from mp_backend.security import redact
from mp_backend.wechat import mp_client, pay_client, translate_errors
from mp_backend.wechat.state import current_state
from mp_backend.wechat.tokens import clear_process_storage
from tests.web.conftest import error_of

UNREACHABLE = "http://127.0.0.1:9/"  # discard port: nothing listens, the connection is refused
OFFLINE = {
    "WECHAT_API_BASE_URL": UNREACHABLE,
    "WECHAT_OAUTH_BASE_URL": UNREACHABLE + "connect/",
    "WECHAT_PAY_API_BASE_URL": UNREACHABLE,
}
HELD_TOKEN = "AT-held-by-this-process-0123456789"


def secrets_of(app) -> list[str]:  # type: ignore[no-untyped-def]
    config = app.config
    return [
        config["WECHAT_MP_SECRET"],
        config["WECHAT_WXA_SECRET"],
        config["WECHAT_PAY_API_KEY"],
        HELD_TOKEN,
        "sandbox-alice",  # the login code (js_code / OAuth code)
    ]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("wechatpy", "mp_backend", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it, exceptions included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.mark.parametrize("app_overrides", [OFFLINE])
def test_no_secret_in_the_logs_when_wechat_is_unreachable(app, client, debug_logs):
    # when a member logs in through the mini program and through OAuth while WeChat is unreachable
    wxa = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    start = client.get("/wechat/oauth", query_string={"next": "/member"})
    state = client.get_cookie("session")  # the login in progress lives in the session
    assert state is not None
    with client.session_transaction() as session:
        oauth_state = session["oauth"]["state"]
    callback = client.get("/wechat/oauth/callback", query_string={"code": "sandbox-alice", "state": oauth_state})
    # and the official account calls an API with the token it holds, and a payment is ordered
    with app.test_request_context():
        client_ = mp_client()
        current_state().storage.set(client_.access_token_key, HELD_TOKEN, 3600)
        with pytest.raises(AppError), translate_errors("user info"):
            client_.user.get("alice")
        with pytest.raises(AppError), translate_errors("unifiedorder"):
            pay_client(app.config["WECHAT_WXA_APPID"]).order.create(
                "JSAPI",
                "储值",
                100,
                "https://member.example.com/wechat/pay/notify",
                client_ip="127.0.0.1",
                user_id="alice",
            )
    # then each is a clean 502
    assert start.status_code == 302
    assert (wxa.status_code, error_of(wxa)["code"]) == (502, "wechat_unavailable")
    assert (callback.status_code, error_of(callback)["code"]) == (502, "wechat_unavailable")
    # and WARNING lines were written, but no secret, token, code or pay key is in any line
    text = logged(debug_logs)
    assert any(r.levelno >= logging.WARNING for r in debug_logs.records)
    for secret in secrets_of(app):
        assert secret not in text, f"{secret!r} was logged"
    assert "secret=***" in text or "secret" not in text
    clear_process_storage()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /sns/jscode2session?appid=wx1&secret=s3cr3t&js_code=c0de&grant_type=authorization_code",
         "GET /sns/jscode2session?appid=wx1&secret=***&js_code=***&grant_type=authorization_code"),
        ("url: /cgi-bin/user/info?access_token=AT123&openid=o1 (Caused by X)",
         "url: /cgi-bin/user/info?access_token=***&openid=o1 (Caused by X)"),
        ("Calculate Signature URL: appid=wx1&body=x&mch_id=1&key=paykey",
         "Calculate Signature URL: appid=wx1&body=x&mch_id=1&key=***"),
        ("{'secret': 'abc', \"access_token\": \"t\"}", "{'secret': '***', \"access_token\": \"***\"}"),
        ("<xml><sign>ABC</sign><total_fee>1</total_fee></xml>", "<xml><sign>***</sign><total_fee>1</total_fee></xml>"),
        ("errcode=40029 errmsg=invalid code", "errcode=40029 errmsg=invalid code"),
    ],
)  # fmt: skip
def test_redaction_of_query_json_and_xml_secrets(line, expected):
    assert redact(line) == expected
