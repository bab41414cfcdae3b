"""The fake WeChat itself: it must refuse what WeChat refuses, and sign what WeChat signs."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, request
from wechatpy.pay import WeChatPay

from mp_backend import wechat
from mp_backend.errors import UpstreamError
from mp_backend.wechat import mp_client, pay_client
from mp_backend.wechat.fake import FakeSettings, FakeWeChatServer, _flat_xml, create_fake_app, signed_pay_xml
from mp_backend.wechat.menu import load_menu, push_menu

from .conftest import PUBLIC_BASE_URL, serve

KEY = "sandboxpaykey0000000000000000000"
REPO_ROOT = Path(__file__).resolve().parents[2]


def independent_md5_sign(fields: dict[str, Any], key: str) -> str:
    """WeChat Pay v2's documented rule, written out without wechatpy: sorted non-empty k=v, &key=, MD5."""
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "sign" and fields[k] not in ("", None))
    return hashlib.md5(f"{text}&key={key}".encode()).hexdigest().upper()


def independent_hmac_sign(fields: dict[str, Any], key: str) -> str:
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "sign" and fields[k] not in ("", None))
    return hmac.new(key.encode(), f"{text}&key={key}".encode(), hashlib.sha256).hexdigest().upper()


def order_fields(**extra: Any) -> dict[str, Any]:
    return {
        "appid": "wxsandboxwxa000001",
        "mch_id": "1900000109",
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "body": "会员充值",
        "out_trade_no": "R1",
        "total_fee": 10000,
        "spbill_create_ip": "127.0.0.1",
        "notify_url": "https://member.example.com/wechat/pay/notify",
        "trade_type": "JSAPI",
        "openid": "alice",
        **extra,
    }


def post_xml(fake: FakeWeChatServer, path: str, xml: str) -> dict[str, str]:
    response = requests.post(fake.pay_base_url + path, data=xml.encode(), timeout=5)
    fields = _flat_xml(response.text)
    assert fields is not None, response.text
    return fields


# -- pay signatures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sign_type", ["MD5", "HMAC-SHA256"])
def test_correctly_signed_unifiedorder_is_accepted(fake: FakeWeChatServer, sign_type: str) -> None:
    fields = order_fields(sign_type=sign_type) if sign_type != "MD5" else order_fields()
    sign = (independent_hmac_sign if sign_type == "HMAC-SHA256" else independent_md5_sign)(fields, KEY)
    xml = "<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items()) + f"<sign>{sign}</sign></xml>"

    answer = post_xml(fake, "pay/unifiedorder", xml)

    assert (answer["return_code"], answer["result_code"]) == ("SUCCESS", "SUCCESS"), answer
    assert answer["prepay_id"] == fake.orders["R1"].prepay_id
    # and the answer is signed the same way
    expected = (independent_hmac_sign if sign_type == "HMAC-SHA256" else independent_md5_sign)(answer, KEY)
    assert answer["sign"] == expected


@pytest.mark.parametrize(
    "tamper",
    [
        lambda xml: xml.replace("<total_fee>10000</total_fee>", "<total_fee>1</total_fee>"),  # changed after signing
        lambda xml: xml.replace("<sign><![CDATA[", "<sign><![CDATA[0"),  # sign itself altered
        lambda xml: xml.replace("<sign>", "<ignored>").replace("</sign>", "</ignored>"),  # unsigned
    ],
    ids=["amount", "sign", "missing"],
)
def test_tampered_or_unsigned_unifiedorder_is_refused(fake: FakeWeChatServer, tamper: Any) -> None:
    xml = tamper(signed_pay_xml(order_fields(), KEY))

    answer = post_xml(fake, "pay/unifiedorder", xml)

    assert (answer["return_code"], answer["return_msg"]) == ("FAIL", "签名错误")
    assert fake.orders == {}


def test_order_signed_with_another_key_is_refused(fake: FakeWeChatServer) -> None:
    answer = post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(), "y" * 32))
    assert (answer["return_code"], answer["return_msg"]) == ("FAIL", "签名错误")


def test_order_for_another_merchant_or_app_is_refused(fake: FakeWeChatServer) -> None:
    assert post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(mch_id="1"), KEY))["return_code"] == "FAIL"
    other_app = signed_pay_xml(order_fields(appid="wx0000000000000bad"), KEY)
    assert post_xml(fake, "pay/unifiedorder", other_app)["return_msg"] == "appid和mch_id不匹配"


def test_same_out_trade_no_with_other_amount_is_refused(fake: FakeWeChatServer) -> None:
    first = post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(), KEY))
    again = post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(nonce_str="other"), KEY))
    changed = post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(total_fee=1), KEY))

    assert again["prepay_id"] == first["prepay_id"]  # a retried request gets the same prepay_id
    assert (changed["result_code"], changed["err_code"]) == ("FAIL", "INVALID_REQUEST")


# -- notifications ------------------------------------------------------------------------------------


@pytest.fixture
def notify_receiver() -> Any:
    """Our side of a notification, done the way the pay blueprint will: wechatpy checks the sign."""
    app = Flask(__name__)
    received: list[dict[str, Any]] = []

    @app.post("/wechat/pay/notify")
    def notify() -> Any:
        payment = WeChatPay("wxsandboxwxa000001", KEY, "1900000109")
        try:
            received.append(payment.parse_payment_result(request.get_data()))
        except Exception:
            return "<xml><return_code><![CDATA[FAIL]]></return_code></xml>", 400
        return "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"

    @app.post("/wechat/pay/refund-notify")
    def refund_notify() -> Any:
        payment = WeChatPay("wxsandboxwxa000001", KEY, "1900000109")
        received.append(payment.parse_refund_notify_result(request.get_data()))
        return "<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"

    app.received = received  # type: ignore[attr-defined]
    return app


def test_payment_notification_is_signed_as_wechat_signs(
    wechat_app: Flask, fake: FakeWeChatServer, notify_receiver: Flask
) -> None:
    # given
    pay_client("wxsandboxwxa000001").order.create(
        "JSAPI", "会员充值", 10000, "https://member.example.com/wechat/pay/notify", client_ip="127.0.0.1",
        user_id="alice", out_trade_no="R1", attach="rule:7",
    )  # fmt: skip

    # when
    result = fake.pay("R1", notify_receiver.test_client())

    # then
    assert result.acknowledged
    (payment,) = notify_receiver.received  # type: ignore[attr-defined]
    assert (payment["out_trade_no"], payment["total_fee"], payment["attach"]) == ("R1", 10000, "rule:7")
    assert payment["transaction_id"] == fake.orders["R1"].transaction_id
    sent = _flat_xml(result.xml_sent)
    assert sent is not None and sent["sign"] == independent_md5_sign(sent, KEY)


def test_overridden_notification_is_still_correctly_signed(
    wechat_app: Flask, fake: FakeWeChatServer, notify_receiver: Flask
) -> None:
    fake.orders.clear()
    post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(), KEY))
    fake.mark_paid("R1")

    result = fake.notify_payment("R1", notify_receiver.test_client(), total_fee=1)

    assert result.acknowledged  # the signature holds: the amount check is the receiver's job
    assert notify_receiver.received[0]["total_fee"] == 1  # type: ignore[attr-defined]


def test_notification_with_a_bad_signature(fake: FakeWeChatServer, notify_receiver: Flask) -> None:
    post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(), KEY))
    fake.mark_paid("R1")

    result = fake.notify_payment("R1", notify_receiver.test_client(), sign="0" * 32)

    assert not result.acknowledged and result.status == 400
    assert notify_receiver.received == []  # type: ignore[attr-defined]


def test_notification_is_posted_to_the_notify_url(fake: FakeWeChatServer, notify_receiver: Flask) -> None:
    with serve(notify_receiver) as origin:
        post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(notify_url=f"{origin}/wechat/pay/notify"), KEY))
        result = fake.pay("R1")

    assert result.acknowledged
    assert notify_receiver.received[0]["out_trade_no"] == "R1"  # type: ignore[attr-defined]


def test_refund_and_its_encrypted_notification(fake: FakeWeChatServer, notify_receiver: Flask) -> None:
    # given: a paid order of 100 yuan
    post_xml(fake, "pay/unifiedorder", signed_pay_xml(order_fields(), KEY))
    fake.mark_paid("R1")
    refund = {
        "appid": "wxsandboxwxa000001",
        "mch_id": "1900000109",
        "nonce_str": "n1",
        "out_trade_no": "R1",
        "out_refund_no": "F1",
        "total_fee": 10000,
        "refund_fee": 2500,
        "notify_url": "https://member.example.com/wechat/pay/refund-notify",
    }

    # when
    answer = post_xml(fake, "secapi/pay/refund", signed_pay_xml(refund, KEY))
    too_much = post_xml(
        fake, "secapi/pay/refund", signed_pay_xml({**refund, "out_refund_no": "F2", "refund_fee": 7501}, KEY)
    )
    result = fake.notify_refund("F1", notify_receiver.test_client())

    # then
    assert answer["result_code"] == "SUCCESS" and answer["refund_fee"] == "2500"
    assert (too_much["result_code"], too_much["err_code"]) == ("FAIL", "INVALID_REQUEST")
    assert result.status == 200
    details = notify_receiver.received[0]  # type: ignore[attr-defined]
    assert (details["out_refund_no"], details["refund_fee"], details["refund_status"]) == ("F1", 2500, "SUCCESS")


# -- access tokens and failure steering --------------------------------------------------------------


def api(fake: FakeWeChatServer, path: str, **params: str) -> dict[str, Any]:
    return requests.get(fake.base_url + path, params=params, timeout=5).json()  # type: ignore[no-any-return]


def stable_token(fake: FakeWeChatServer, **payload: Any) -> dict[str, Any]:
    body = {"grant_type": "client_credential", "appid": "wxsandboxmp0000001", "secret": "sandbox-mp-secret", **payload}
    return requests.post(fake.base_url + "cgi-bin/stable_token", json=body, timeout=5).json()  # type: ignore[no-any-return]


def test_token_endpoints_check_the_app(fake: FakeWeChatServer) -> None:
    assert stable_token(fake, secret="wrong")["errcode"] == 40125
    assert stable_token(fake, appid="wx0000000000000bad")["errcode"] == 40013
    wrong = api(fake, "cgi-bin/token", grant_type="client_credential", appid="wxsandboxmp0000001", secret="x")
    assert wrong["errcode"] == 40125 and "rid:" in wrong["errmsg"]


def test_stable_token_modes(fake: FakeWeChatServer) -> None:
    first = stable_token(fake)["access_token"]
    assert stable_token(fake)["access_token"] == first  # normal mode: the current one while valid
    forced = stable_token(fake, force_refresh=True)["access_token"]
    assert forced != first
    assert api(fake, "cgi-bin/user/info", access_token=first, openid="alice")["errcode"] == 40001
    assert api(fake, "cgi-bin/user/info", access_token=forced, openid="alice")["openid"] == "alice"


def test_tokens_are_checked(fake: FakeWeChatServer) -> None:
    mp_token = stable_token(fake)["access_token"]
    wxa_token = stable_token(fake, appid="wxsandboxwxa000001", secret="sandbox-wxa-secret")["access_token"]

    assert api(fake, "cgi-bin/user/info", openid="alice")["errcode"] == 41001
    assert api(fake, "cgi-bin/user/info", access_token="made-up", openid="alice")["errcode"] == 40001
    assert api(fake, "cgi-bin/user/info", access_token=wxa_token, openid="alice")["errcode"] == 48001
    fake.expire_tokens()
    assert api(fake, "cgi-bin/user/info", access_token=mp_token, openid="alice")["errcode"] == 42001
    assert stable_token(fake)["access_token"] != mp_token  # an expired stable token is replaced


def test_fail_next_counts_down_and_records_calls(fake: FakeWeChatServer) -> None:
    fake.fail_next("sns/jscode2session", errcode=45011, times=2)
    params = {"appid": "wxsandboxwxa000001", "secret": "sandbox-wxa-secret", "js_code": "sandbox-a"}
    params["grant_type"] = "authorization_code"

    answers = [api(fake, "sns/jscode2session", **params) for _ in range(3)]

    assert [a.get("errcode") for a in answers] == [45011, 45011, None]
    assert answers[2]["openid"] == "a"
    assert [call.args["js_code"] for call in fake.calls_to("sns/jscode2session")] == ["sandbox-a"] * 3


def test_fail_next_with_http_status(fake: FakeWeChatServer) -> None:
    fake.fail_next("cgi-bin/stable_token", status=503)
    assert requests.post(fake.base_url + "cgi-bin/stable_token", json={}, timeout=5).status_code == 503


def test_unknown_endpoint_is_a_clear_404(fake: FakeWeChatServer) -> None:
    response = requests.get(fake.base_url + "cgi-bin/nope", timeout=5)
    assert response.status_code == 404 and "nope" in response.json()["errmsg"]


# -- OAuth page ---------------------------------------------------------------------------------------


def test_authorize_page_escapes_what_it_echoes(fake: FakeWeChatServer) -> None:
    page = requests.get(
        fake.oauth_base_url + "oauth2/authorize",
        params={"appid": "wxsandboxmp0000001", "redirect_uri": 'https://x.example/"><script>alert(1)</script>',
                "scope": "snsapi_base", "state": "<b>"},
        timeout=5,
    )  # fmt: skip
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_authorize_page_refuses_other_apps_and_odd_openids(fake: FakeWeChatServer) -> None:
    url = fake.oauth_base_url + "oauth2/authorize"
    other = {"appid": "wx0000000000000bad", "redirect_uri": "https://x.example/cb", "scope": "snsapi_base"}
    assert requests.get(url, params=other, timeout=5).status_code == 400
    odd = {**other, "appid": "wxsandboxmp0000001", "openid": "a b"}
    assert requests.get(url, params=odd, timeout=5, allow_redirects=False).status_code == 400
    scripted = {**odd, "openid": "erin", "state": "st"}
    redirected = requests.get(url, params=scripted, timeout=5, allow_redirects=False)
    assert redirected.headers["Location"] == "https://x.example/cb?code=sandbox-erin&state=st"


# -- menu -----------------------------------------------------------------------------------------------


def test_menu_file_substitutes_the_public_origin() -> None:
    menu = load_menu(REPO_ROOT / "wechat_menu.json", "https://member.example.com/")

    assert [b["name"] for b in menu["button"]] == ["会员中心", "充值", "我的余额"]
    assert menu["button"][0]["url"] == "https://member.example.com/static/member.html"
    assert menu["button"][1]["url"] == "https://member.example.com/r"
    assert menu["button"][2] == {"type": "click", "name": "我的余额", "key": "MY_BALANCE"}
    assert "{PUBLIC_BASE_URL}" not in json.dumps(menu)


def test_push_menu(wechat_app: Flask, fake: FakeWeChatServer) -> None:
    pushed = push_menu(REPO_ROOT / "wechat_menu.json")

    assert fake.menu == pushed
    assert pushed["button"][1]["url"] == f"{PUBLIC_BASE_URL}/r"
    assert mp_client().menu.get()["menu"]["button"] == pushed["button"]


def test_push_menu_refused_by_wechat(wechat_app: Flask, tmp_path: Path) -> None:
    broken = tmp_path / "menu.json"
    broken.write_text(json.dumps({"button": [{"type": "view", "name": "x", "url": "ftp://nope"}]}))
    with pytest.raises(UpstreamError):
        push_menu(broken)


# -- the sandbox inside the app --------------------------------------------------------------------------


def sandbox_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, WECHAT_SANDBOX=True, PUBLIC_BASE_URL="http://127.0.0.1:5000", **config)
    app.add_url_rule("/hello", "hello", lambda: "app")
    wechat.init_app(app)
    return app


def test_sandbox_is_mounted_only_when_asked(fake: FakeWeChatServer) -> None:
    off = Flask(__name__)
    off.config.update(WECHAT_SANDBOX=False, **fake.config())
    wechat.init_app(off)
    off.add_url_rule("/hello", "hello", lambda: "app")
    assert off.test_client().get("/sandbox/wechat/cgi-bin/token").status_code == 404

    on = sandbox_app()
    mount = on.extensions["wechat_sandbox"]
    assert mount._fake is None  # nothing built until the sandbox is used
    client = on.test_client()
    assert client.get("/hello").get_data(as_text=True) == "app"
    assert mount._fake is None
    answer = client.post(
        "/sandbox/wechat/cgi-bin/stable_token",
        json={"grant_type": "client_credential", "appid": "wxsandboxmp0000001", "secret": "sandbox-mp-secret"},
    ).get_json()
    assert answer["access_token"]
    assert mount.fake.calls_to("cgi-bin/stable_token")


def test_sandbox_uses_the_configured_credentials() -> None:
    app = sandbox_app(WECHAT_WXA_APPID="wxmyownapp00000001", WECHAT_WXA_SECRET="my-secret")
    client = app.test_client()
    params = {"appid": "wxmyownapp00000001", "secret": "my-secret", "js_code": "sandbox-zoe"}
    ok = client.get("/sandbox/wechat/sns/jscode2session", query_string={**params, "grant_type": "authorization_code"})
    assert ok.get_json()["openid"] == "zoe"


def test_sandbox_pay_page_pays_and_notifies(notify_receiver: Flask) -> None:
    # given: an order in the app's own sandbox (the fake posts the notification over HTTP)
    app = sandbox_app()
    client = app.test_client()
    fake = app.extensions["wechat_sandbox"].fake
    with serve(notify_receiver) as receiver:
        xml = signed_pay_xml(order_fields(notify_url=f"{receiver}/wechat/pay/notify"), KEY)
        created = _flat_xml(client.post("/sandbox/wechatpay/pay/unifiedorder", data=xml).get_data()) or {}
        prepay_id = created["prepay_id"]

        # when: the member opens the pay page and confirms
        page = client.get("/sandbox/wechatpay/sandbox/pay", query_string={"prepay_id": prepay_id})
        confirmed = client.post(
            "/sandbox/wechatpay/sandbox/pay", data={"prepay_id": prepay_id, "return_to": "https://evil.example/"}
        )

    # then
    assert "¥100.00" in page.get_data(as_text=True)
    assert confirmed.status_code == 200 and "已通知商户" in confirmed.get_data(as_text=True)  # no off-site redirect
    assert fake.orders["R1"].trade_state == "SUCCESS"
    assert notify_receiver.received[0]["out_trade_no"] == "R1"  # type: ignore[attr-defined]


def test_fake_app_exposes_its_state() -> None:
    app = create_fake_app()
    app.test_client().get("/wechat/cgi-bin/menu/get")
    assert app.extensions["fake_wechat"].calls_to("cgi-bin/menu/get")


def test_forced_refreshes_are_limited_per_app_and_day(fake: FakeWeChatServer) -> None:
    # WeChat: force_refresh=true 20 times a day per appid, then errcode 45009 (normal mode still works)
    forced = [stable_token(fake, force_refresh=True) for _ in range(21)]
    assert all("access_token" in answer for answer in forced[:20])
    assert forced[20]["errcode"] == 45009
    assert "access_token" in stable_token(fake)
    other_app = stable_token(fake, appid="wxsandboxwxa000001", secret="sandbox-wxa-secret", force_refresh=True)
    assert "access_token" in other_app


def jscode2session_answer(fake: FakeWeChatServer, code: str) -> dict[str, Any]:
    return api(
        fake,
        "sns/jscode2session",
        appid=fake.settings.wxa_appid,
        secret=fake.settings.wxa_secret,
        js_code=code,
        grant_type="authorization_code",
    )


def test_issued_login_codes_are_single_use_while_sandbox_codes_are_reusable(fake: FakeWeChatServer) -> None:
    # a code as wx.login() gives it: one exchange, then 40163 "code been used"
    code = fake.issue_login_code("alice")
    assert jscode2session_answer(fake, code)["openid"] == "alice"
    assert jscode2session_answer(fake, code)["errcode"] == 40163
    # a code of the official account is no code of the mini program
    assert jscode2session_answer(fake, fake.issue_login_code("alice", fake.settings.mp_appid))["errcode"] == 40029
    # the sandbox's sandbox-<openid> codes may be used again and again
    assert jscode2session_answer(fake, "sandbox-alice")["openid"] == "alice"
    assert jscode2session_answer(fake, "sandbox-alice")["openid"] == "alice"


@pytest.mark.parametrize("fake_settings", [FakeSettings(with_unionid=True)])
def test_both_apps_answer_one_unionid_for_a_sandbox_openid(fake: FakeWeChatServer) -> None:
    wxa = jscode2session_answer(fake, "sandbox-alice")
    oauth = api(
        fake,
        "sns/oauth2/access_token",
        appid=fake.settings.mp_appid,
        secret=fake.settings.mp_secret,
        code="sandbox-alice",
        grant_type="authorization_code",
    )
    assert wxa["unionid"] == oauth["unionid"] == "sandbox-union-alice"


def test_the_fake_refuses_a_huge_body_before_reading_it_and_survives_deep_json():
    # the sandbox serves the fake from `make run`: it must be no easier to knock over than the app
    from mp_backend.wechat.fake import FakeWeChat

    client = FakeWeChat().app.test_client()
    # (an empty body declared as 300 MB: refused by the declaration alone)
    huge = client.post(
        "/wechat/sns/jscode2session", data=b"", environ_overrides={"CONTENT_LENGTH": str(300 * 1024 * 1024)}
    )
    assert huge.status_code == 413
    deep = client.post("/wechat/sns/jscode2session", data=b"[" * 100_000, content_type="application/json")
    assert deep.status_code < 500


# -- mini-program codes -------------------------------------------------------------------------------


def test_wxacode_unlimit_refuses_what_wechat_refuses_and_draws_the_rest(fake: FakeWeChatServer) -> None:
    from tests.qr import decode_qr

    mp_token = stable_token(fake)["access_token"]
    wxa_token = stable_token(fake, appid="wxsandboxwxa000001", secret="sandbox-wxa-secret")["access_token"]

    def code(body: Any, token: str | None = wxa_token) -> requests.Response:
        params = {"access_token": token} if token else {}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(fake.base_url + "wxa/getwxacodeunlimit", params=params, data=data, timeout=5)

    def errcode(body: Any, token: str | None = wxa_token) -> int:
        return code(body, token).json()["errcode"]  # type: ignore[no-any-return]

    # the access token: present, issued, the mini program's
    assert errcode({"scene": "a"}, None) == 41001
    assert errcode({"scene": "a"}, "made-up") == 40001
    assert errcode({"scene": "a"}, mp_token) == 48001
    # the scene: 1-32 of WeChat's characters
    assert errcode({"page": "pages/index/index"}) == 40169
    assert errcode({"scene": "x" * 33}) == 40169
    assert errcode({"scene": "a%20b"}) == 40129 and errcode({"scene": "会员"}) == 40129
    # the body's types, the version, the page (published, unless check_path is false)
    assert errcode(b"not json") == 47001
    assert errcode({"scene": "a", "width": "430"}) == 47001 and errcode({"scene": "a", "check_path": "false"}) == 47001
    assert errcode({"scene": "a", "env_version": "beta"}) == 40097
    assert errcode({"scene": "a", "page": "/pages/index/index"}) == 41030
    assert errcode({"scene": "a", "page": "pages/index/index?x=1"}) == 41030
    assert errcode({"scene": "a", "page": "pages/draft/index"}) == 41030
    unchecked = code({"scene": "a", "page": "pages/draft/index", "check_path": False, "env_version": "develop"})
    assert unchecked.headers["Content-Type"] == "image/png"
    assert decode_qr(unchecked.content) == ["pages/draft/index?scene=a"]
    # no page: the home page; every scene character WeChat allows
    scene = "Az09!#$&'()*+,/:;=?@-._~"
    home = code({"scene": scene, "width": 280})
    assert home.content.startswith(b"\x89PNG") and decode_qr(home.content) == [f"pages/index/index?scene={scene}"]
    assert len(fake.calls_to("wxa/getwxacodeunlimit")) == 16
