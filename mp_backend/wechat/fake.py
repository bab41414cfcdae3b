"""A fake WeChat: the APIs this project calls, answered the way WeChat answers them.

It serves two roots, the same in every deployment of it:
- ``/wechat/``    stands for ``https://api.weixin.qq.com/`` (and ``/wechat/connect/`` for
  ``https://open.weixin.qq.com/connect/``, the OAuth page);
- ``/wechatpay/`` stands for ``https://api.mch.weixin.qq.com/`` (WeChat Pay API v2).

Used by ``make run`` (mounted in the app under ``/sandbox``) and by tests (``FakeWeChatServer``, a real
HTTP server on a free local port, so that the project reaches it through wechatpy unchanged).

It is a fake WeChat, not a lax one: it checks appids, secrets, the access tokens it issued and pay
signatures, and answers with WeChat's own error shapes (``{"errcode", "errmsg"}``; pay XML with
``return_code`` / ``result_code`` / ``err_code``). Tests read ``calls`` (and ``member_cards``) and steer it with
``fail_next``, ``fail_code``, ``expire_tokens`` and ``delay``; it signs and sends what WeChat sends
(server-URL messages, payment and refund notifications).

Sandbox conventions: a login or OAuth code ``sandbox-<openid>`` stands for that openid (in either
app, and reusable); codes from ``issue_login_code`` are single use like WeChat's (40163 on reuse); with
``with_unionid`` (on in the sandbox of ``make run``) both apps answer unionid ``sandbox-union-<openid>``;
a phone code ``sandbox-phone-<digits>`` stands for that number; the OAuth page asks for an openid; the
pay page (``/wechatpay/sandbox/pay?prepay_id=...``) pays an order and sends its signed notification; a
mini-program code (``wxa/getwxacodeunlimit``) is a PNG QR code of ``<page>?scene=<scene>`` for the pages in
``FakeSettings.wxa_pages`` (WeChat draws a round code, as a JPEG).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
import qrcode
import qrcode.image.pure
import requests
from defusedxml import DefusedXmlException
from flask import Flask, Response, redirect, request
from markupsafe import escape
from wechatpy.crypto import RefundCrypto, WeChatCrypto
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml
from wechatpy.utils import WeChatSigner
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

API_PREFIX = "wechat"
PAY_PREFIX = "wechatpay"
SANDBOX_CODE_PREFIX = "sandbox-"
SANDBOX_UNIONID_PREFIX = "sandbox-union-"
PHONE_CODE_PREFIX = "sandbox-phone-"
OPENID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WXA_SCENE_PATTERN = re.compile(r"^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+$")  # WeChat's scene characters
CHINA = timezone(timedelta(hours=8))
HTTP_TIMEOUT_SECONDS = 10.0


# ----------------------------------------------------------------------------------------------
# Settings and records


@dataclass(frozen=True)
class FakeSettings:
    """What the fake knows about "our" apps. Defaults are the sandbox demo values of config.py."""

    mp_appid: str = "wxsandboxmp0000001"
    mp_secret: str = "sandbox-mp-secret"
    mp_token: str = "sandboxtoken"
    mp_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    mp_original_id: str = "gh_sandbox000001"  # the official account's own id, ToUserName of messages
    wxa_appid: str = "wxsandboxwxa000001"
    wxa_secret: str = "sandbox-wxa-secret"
    pay_mch_id: str = "1900000109"
    pay_api_key: str = "sandboxpaykey0000000000000000000"
    # Answer unionid "sandbox-union-<openid>" in both apps, as when they share an open-platform account
    # (the sandbox of make run does, so a demo member is one person in the mini program and the H5 pages).
    with_unionid: bool = False
    token_ttl: int = 7200
    forced_refresh_daily_limit: int = 20  # WeChat's: force_refresh=true 20 times a day per appid, then 45009
    # HMAC-SHA256 payment notifications carry sign_type (False: leave it out, as WeChat does)
    notify_sign_type_field: bool = True
    # The pages of the published mini program (the first is its home page): a mini-program code for
    # any other page is refused with 41030 unless the request says check_path: false.
    wxa_pages: tuple[str, ...] = ("pages/index/index", "pages/recharge/index", "pages/points/index")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> FakeSettings:
        """Match an app's configuration (``app.config`` or a Config's ``vars()``)."""
        defaults = cls()
        values = {
            "mp_appid": config.get("WECHAT_MP_APPID") or defaults.mp_appid,
            "mp_secret": config.get("WECHAT_MP_SECRET") or defaults.mp_secret,
            "mp_token": config.get("WECHAT_MP_TOKEN") or defaults.mp_token,
            "mp_aes_key": config.get("WECHAT_MP_AES_KEY") or defaults.mp_aes_key,
            "wxa_appid": config.get("WECHAT_WXA_APPID") or defaults.wxa_appid,
            "wxa_secret": config.get("WECHAT_WXA_SECRET") or defaults.wxa_secret,
            "pay_mch_id": config.get("WECHAT_PAY_MCH_ID") or defaults.pay_mch_id,
            "pay_api_key": config.get("WECHAT_PAY_API_KEY") or defaults.pay_api_key,
        }
        page = config.get("WECHAT_WXA_RECHARGE_PAGE")
        if page and page not in defaults.wxa_pages:  # the sandbox's mini program has the configured page
            values["wxa_pages"] = (*defaults.wxa_pages, page)
        return replace(defaults, **{**values, **overrides})


@dataclass(frozen=True)
class Call:
    """One request the fake received. ``path`` is relative to its root, e.g. ``sns/jscode2session``."""

    method: str
    path: str
    args: dict[str, str]
    body: bytes
    json: Any = None
    xml: dict[str, str] | None = None
    at: float = 0.0


@dataclass
class _Failure:
    errcode: int | str | None
    errmsg: str | None
    status: int | None
    remaining: int


@dataclass
class _Token:
    appid: str
    expires_at: float
    revoked: bool = False


@dataclass
class _OAuthToken:
    openid: str
    scope: str
    expires_at: float


@dataclass
class FakeOrder:
    appid: str
    mch_id: str
    out_trade_no: str
    total_fee: int
    notify_url: str
    trade_type: str
    body: str
    openid: str
    attach: str
    sign_type: str
    prepay_id: str
    trade_state: str = "NOTPAY"  # NOTPAY -> SUCCESS | CLOSED (WeChat's trade_state values)
    transaction_id: str | None = None
    time_end: str | None = None
    refunded_fee: int = 0


@dataclass
class FakeRefund:
    out_refund_no: str
    out_trade_no: str
    transaction_id: str
    refund_id: str
    refund_fee: int
    total_fee: int
    notify_url: str | None
    status: str = "PROCESSING"  # PROCESSING -> SUCCESS
    success_time: str | None = None


@dataclass
class FakeMemberCard:
    """A WeChat member card in a user's card wallet: what they filled in, what the card shows."""

    card_id: str
    code: str
    openid: str
    form: dict[str, str]
    membership_number: str = ""
    balance: int = 0  # fen
    bonus: int = 0  # points
    activations: int = 0
    updates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MpReply:
    """What our server URL answered: ``text`` is the reply XML decrypted (or ``success``)."""

    status: int
    body: str
    text: str
    encrypted: bool
    fields: dict[str, str] | None

    @property
    def content(self) -> str | None:
        return (self.fields or {}).get("Content")


@dataclass(frozen=True)
class NotifyResult:
    """What our notify URL answered to a pay or refund notification."""

    status: int
    body: str
    xml_sent: str

    @property
    def acknowledged(self) -> bool:
        """True when the answer is WeChat's "received" (``return_code`` SUCCESS), as WeChat reads it."""
        fields = _flat_xml(self.body)
        return self.status == 200 and fields is not None and fields.get("return_code") == "SUCCESS"


# ----------------------------------------------------------------------------------------------
# Helpers shared with tests


def _rid() -> str:
    return f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def _flat_xml(text: str | bytes) -> dict[str, str] | None:
    """``<xml><a>1</a>...</xml>`` as a dict, read with defusedxml; None when it is not such XML."""
    try:
        root = SafeET.fromstring(text, forbid_dtd=True)
    except (ParseError, DefusedXmlException):
        return None
    if root.tag != "xml":
        return None
    return {child.tag: (child.text or "") for child in root}


FAKE_MAX_BODY_BYTES = 1024 * 1024


def _json_body() -> Any:
    """WeChat reads the body as JSON whatever the Content-Type (wechatpy sends none)."""
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, RecursionError):  # deep nesting: not JSON WeChat would accept either
        return None


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def sign_pay_fields(fields: Mapping[str, Any], api_key: str, sign_type: str = "MD5") -> str:
    """A WeChat Pay v2 signature (MD5 or HMAC-SHA256) over ``fields`` (``sign`` itself excluded)."""
    data = {k: v for k, v in fields.items() if k != "sign"}
    if sign_type == "HMAC-SHA256":
        return str(calculate_signature_hmac(data, api_key))
    return str(calculate_signature(data, api_key))


def pay_signature_ok(fields: Mapping[str, str], api_key: str) -> bool:
    sign = fields.get("sign") or ""
    expected = sign_pay_fields(fields, api_key, fields.get("sign_type") or "MD5")
    return bool(sign) and hmac.compare_digest(sign, expected)


def signed_pay_xml(fields: Mapping[str, Any], api_key: str, sign_type: str = "MD5") -> str:
    data = {k: v for k, v in fields.items() if v is not None and v != "" and k != "sign"}
    return str(dict_to_xml(data, sign_pay_fields(data, api_key, sign_type)))


def server_signature(token: str, timestamp: str, nonce: str) -> str:
    """The ``signature`` WeChat puts on every request to a server URL."""
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return str(signer.signature)


def _now_text() -> str:
    return datetime.now(CHINA).strftime("%Y%m%d%H%M%S")


# ----------------------------------------------------------------------------------------------
# The fake


Handler = Callable[[], Response]


class FakeWeChat:
    """The state and behaviour of the fake; ``.app`` is its WSGI application."""

    def __init__(self, settings: FakeSettings | None = None) -> None:
        self.settings = settings or FakeSettings()
        self._lock = threading.RLock()
        self.calls: list[Call] = []
        self.menu: dict[str, Any] | None = None
        self.template_messages: list[dict[str, Any]] = []
        self._client_msg_ids: dict[tuple[str, str], int] = {}
        self.orders: dict[str, FakeOrder] = {}
        self.refunds: dict[str, FakeRefund] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._code_failures: dict[str, int] = {}
        self._delays: dict[str, float] = {}
        self._tokens: dict[str, _Token] = {}
        self._stable: dict[str, str] = {}  # appid -> current stable token
        self._forced_refreshes: dict[tuple[str, str], int] = {}  # (appid, day) -> forced refreshes
        self._issued_codes: dict[str, tuple[str, str]] = {}  # single-use login code -> (appid, openid)
        self._used_codes: set[str] = set()
        self._oauth_tokens: dict[str, _OAuthToken] = {}
        self._oauth_scopes: dict[str, str] = {}  # openid -> scope last granted on the authorize page
        self._init_subscribe()
        self.member_cards: dict[str, FakeMemberCard] = {}  # code -> the member card it stands for
        self.app = self._build_app()

    # -- steering (tests) -------------------------------------------------------------------------

    def fail_next(
        self,
        path: str,
        errcode: int | str | None = None,
        *,
        errmsg: str | None = None,
        status: int | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls to ``path`` fail: with WeChat error ``errcode`` (a pay ``err_code``
        string for pay paths), or with HTTP ``status`` (e.g. 500)."""
        if errcode is None and status is None:
            raise ValueError("fail_next needs errcode or status")
        with self._lock:
            self._failures.setdefault(path.strip("/"), []).append(_Failure(errcode, errmsg, status, times))

    def fail_code(self, code: str, errcode: int = 40029) -> None:
        """Login, OAuth and phone codes equal to ``code`` are refused with ``errcode`` until reset."""
        with self._lock:
            self._code_failures[code] = errcode

    def delay(self, path: str, seconds: float) -> None:
        """Answer ``path`` only after ``seconds`` (0 to stop): lets a test hit the client's timeout."""
        with self._lock:
            if seconds > 0:
                self._delays[path.strip("/")] = seconds
            else:
                self._delays.pop(path.strip("/"), None)

    def expire_tokens(self, appid: str | None = None) -> None:
        """Every access token issued so far (for ``appid``, or all) is now expired (errcode 42001)."""
        with self._lock:
            past = time.time() - 1
            for token in self._tokens.values():
                if appid is None or token.appid == appid:
                    token.expires_at = past

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.menu = None
            self.template_messages.clear()
            self._client_msg_ids.clear()
            self.orders.clear()
            self.refunds.clear()
            self._failures.clear()
            self._code_failures.clear()
            self._delays.clear()
            self._tokens.clear()
            self._stable.clear()
            self._forced_refreshes.clear()
            self._issued_codes.clear()
            self._used_codes.clear()
            self._oauth_tokens.clear()
            self._oauth_scopes.clear()
            self._init_subscribe()
            self.member_cards.clear()

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.path == path.strip("/")]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- the app ----------------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(f"{__name__}.{id(self)}")
        # WeChat's own limits are far below this; the sandbox is served by make run, so it must not read
        # a 200 MB body into memory either (refused by the declared length, before reading).
        app.config["MAX_CONTENT_LENGTH"] = FAKE_MAX_BODY_BYTES
        api: dict[str, Handler] = {
            "cgi-bin/token": self._token,
            "cgi-bin/stable_token": self._stable_token,
            "sns/jscode2session": self._jscode2session,
            "sns/oauth2/access_token": self._oauth_access_token,
            "sns/userinfo": self._userinfo,
            "cgi-bin/menu/create": self._menu_create,
            "cgi-bin/menu/get": self._menu_get,
            "cgi-bin/message/template/send": self._template_send,
            "cgi-bin/message/subscribe/send": self._subscribe_send,
            "wxa/business/getuserphonenumber": self._phone_number,
            "wxa/getwxacodeunlimit": self._wxacode_unlimit,
            "cgi-bin/user/info": self._user_info,
            "connect/oauth2/authorize": self._authorize_page,
            "card/membercard/userinfo/get": self._membercard_userinfo,
            "card/membercard/activate": self._membercard_activate,
            "card/membercard/updateuser": self._membercard_updateuser,
        }
        pay: dict[str, Handler] = {
            "pay/unifiedorder": self._unifiedorder,
            "pay/orderquery": self._orderquery,
            "pay/closeorder": self._closeorder,
            "secapi/pay/refund": self._refund,
            "sandbox/pay": self._sandbox_pay_page,
        }

        @app.route(f"/{API_PREFIX}/<path:path>", methods=["GET", "POST"])
        def api_root(path: str) -> Response:
            return self._dispatch(path, api, is_pay=False)

        @app.route(f"/{PAY_PREFIX}/<path:path>", methods=["GET", "POST"])
        def pay_root(path: str) -> Response:
            return self._dispatch(path, pay, is_pay=True)

        return app

    def _dispatch(self, path: str, handlers: Mapping[str, Handler], *, is_pay: bool) -> Response:
        path = path.strip("/")
        body = request.get_data(cache=True)
        parsed_json: Any = None
        if body and (request.mimetype == "application/json" or body.lstrip().startswith(b"{")):
            try:
                parsed_json = json.loads(body)
            except (ValueError, RecursionError):
                parsed_json = None
        xml = _flat_xml(body) if is_pay and body else None
        with self._lock:
            self.calls.append(
                Call(request.method, path, dict(request.args.items()), body, parsed_json, xml, time.time())
            )
            pause = self._delays.get(path, 0.0)
            failure = self._take_failure(path)
        if pause:
            time.sleep(pause)
        if failure is not None:
            return self._failure_response(failure, is_pay=is_pay)
        handler = handlers.get(path)
        if handler is None:
            return self._json({"errcode": -1, "errmsg": f"fake WeChat has no {path}"}, status=404)
        return handler()

    def _take_failure(self, path: str) -> _Failure | None:
        queue = self._failures.get(path)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

    def _failure_response(self, failure: _Failure, *, is_pay: bool) -> Response:
        if failure.status is not None:
            return Response(f"fake WeChat: HTTP {failure.status}", status=failure.status, mimetype="text/plain")
        if is_pay:
            fields = {
                "return_code": "SUCCESS",
                "return_msg": "OK",
                "result_code": "FAIL",
                "err_code": str(failure.errcode),
                "err_code_des": failure.errmsg or "fake failure",
            }
            return self._pay_xml(fields)
        return self._error(int(failure.errcode or -1), failure.errmsg or "fake failure")

    # -- responses --------------------------------------------------------------------------------

    @staticmethod
    def _json(payload: Mapping[str, Any], status: int = 200) -> Response:
        return Response(
            json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json; encoding=utf-8"
        )

    def _error(self, errcode: int, errmsg: str) -> Response:
        # WeChat's shape: HTTP 200, {"errcode": n, "errmsg": "... rid: ..."}.
        return self._json({"errcode": errcode, "errmsg": f"{errmsg} rid: {_rid()}"})

    def _pay_xml(self, fields: Mapping[str, Any], sign_type: str = "MD5") -> Response:
        data = dict(fields)
        if data.get("return_code") == "SUCCESS":
            data.setdefault("mch_id", self.settings.pay_mch_id)
            data.setdefault("nonce_str", secrets.token_hex(16))
            text = signed_pay_xml(data, self.settings.pay_api_key, sign_type)
        else:
            text = str(dict_to_xml(data))
        return Response(text, mimetype="text/xml")

    def _pay_fail(self, return_msg: str) -> Response:
        return self._pay_xml({"return_code": "FAIL", "return_msg": return_msg})

    def _pay_result_fail(self, err_code: str, des: str, request_fields: Mapping[str, str]) -> Response:
        return self._pay_xml(
            {
                "return_code": "SUCCESS",
                "return_msg": "OK",
                "appid": request_fields.get("appid"),
                "result_code": "FAIL",
                "err_code": err_code,
                "err_code_des": des,
            },
            request_fields.get("sign_type") or "MD5",
        )

    # -- access tokens ----------------------------------------------------------------------------

    def _secret_of(self, appid: str) -> str | None:
        return {self.settings.mp_appid: self.settings.mp_secret, self.settings.wxa_appid: self.settings.wxa_secret}.get(
            appid
        )

    def _check_app(self, appid: str | None, secret: str | None) -> Response | None:
        known = self._secret_of(appid or "")
        if known is None:
            return self._error(40013, "invalid appid")
        if not secret or not hmac.compare_digest(known, secret):
            return self._error(40125, "invalid appsecret")
        return None

    def _issue_token(self, appid: str) -> str:
        token = f"fake-at-{secrets.token_urlsafe(24)}"
        self._tokens[token] = _Token(appid, time.time() + self.settings.token_ttl)
        return token

    def _token(self) -> Response:
        args = request.args
        if args.get("grant_type") != "client_credential":
            return self._error(40002, "invalid grant_type")
        refused = self._check_app(args.get("appid"), args.get("secret"))
        if refused:
            return refused
        with self._lock:
            token = self._issue_token(str(args["appid"]))
        return self._json({"access_token": token, "expires_in": self.settings.token_ttl})

    def _stable_token(self) -> Response:
        payload = _json_body() or {}
        if payload.get("grant_type") != "client_credential":
            return self._error(40002, "invalid grant_type")
        appid = str(payload.get("appid") or "")
        refused = self._check_app(appid, payload.get("secret"))
        if refused:
            return refused
        now = time.time()
        with self._lock:
            if payload.get("force_refresh") is True:
                day = (appid, datetime.now(CHINA).strftime("%Y%m%d"))
                if self._forced_refreshes.get(day, 0) >= self.settings.forced_refresh_daily_limit:
                    return self._error(45009, "reach max api daily quota limit")
                self._forced_refreshes[day] = self._forced_refreshes.get(day, 0) + 1
            current = self._stable.get(appid)
            info = self._tokens.get(current) if current else None
            if payload.get("force_refresh") is True or info is None or info.revoked or info.expires_at <= now:
                if info is not None:
                    info.revoked = True  # a forced refresh invalidates the previous stable token
                current = self._issue_token(appid)
                self._stable[appid] = current
                info = self._tokens[current]
        return self._json({"access_token": current, "expires_in": max(1, int(info.expires_at - now))})

    def _require_token(self, appid: str) -> Response | None:
        token = request.args.get("access_token")
        if not token:
            return self._error(41001, "access_token missing")
        with self._lock:
            info = self._tokens.get(token)
        if info is None or info.revoked:
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        if info.expires_at <= time.time():
            return self._error(42001, "access_token expired")
        if info.appid != appid:
            return self._error(48001, "api unauthorized")
        return None

    # -- mini-program subscribe messages (subscribeMessage.send, issue 14) -------------------------
    # WeChat lets one subscribe message through per consent the user gave in the mini program
    # (wx.requestSubscribeMessage); with none left it answers 43101. Tests give consents with
    # ``grant_subscribe`` (what the user's tap does at WeChat) and read ``subscribe_messages``.

    def _init_subscribe(self) -> None:
        self.subscribe_messages: list[dict[str, Any]] = []
        self._subscribe_consents: dict[tuple[str, str], int] = {}  # (openid, template_id) -> consents left

    def grant_subscribe(self, openid: str, template_id: str, times: int = 1) -> None:
        with self._lock:
            key = (openid, template_id)
            self._subscribe_consents[key] = self._subscribe_consents.get(key, 0) + times

    def subscribe_consents_left(self, openid: str, template_id: str) -> int:
        with self._lock:
            return self._subscribe_consents.get((openid, template_id), 0)

    def _subscribe_send(self) -> Response:
        refused = self._require_token(self.settings.wxa_appid)
        if refused:
            return refused
        payload = _json_body() or {}
        openid, template = str(payload.get("touser") or ""), str(payload.get("template_id") or "")
        if not openid or not OPENID_PATTERN.match(openid):
            return self._error(40003, "invalid openid")
        if not template:
            return self._error(40037, "invalid template id")
        data = payload.get("data")
        if (
            not isinstance(data, dict)
            or not data
            or not all(isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values())
        ):
            return self._error(47003, "argument invalid! data.value is empty or invalid")
        with self._lock:
            left = self._subscribe_consents.get((openid, template), 0)
            if left <= 0:
                return self._error(43101, "user refuse to accept the msg")
            self._subscribe_consents[(openid, template)] = left - 1
            self.subscribe_messages.append(payload)
            msgid = len(self.subscribe_messages)
        return self._json({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    # -- mini program -----------------------------------------------------------------------------

    def _code_refusal(self, code: str) -> Response | None:
        with self._lock:
            errcode = self._code_failures.get(code)
        if errcode is not None:
            return self._error(
                errcode, {40163: "code been used", 45011: "api minute-quota reach limit"}.get(errcode, "invalid code")
            )
        return None

    def issue_login_code(self, openid: str, appid: str | None = None) -> str:
        """A login code as WeChat issues them (wx.login, OAuth): for one app, good for one exchange;
        its reuse is errcode 40163. The sandbox's ``sandbox-<openid>`` codes stay reusable."""
        code = "0" + secrets.token_hex(16)[:31]
        with self._lock:
            self._issued_codes[code] = (appid or self.settings.wxa_appid, openid)
        return code

    def _openid_from_code(self, code: str, appid: str) -> tuple[str | None, Response | None]:
        """The openid behind ``code`` for ``appid``, or WeChat's refusal (40029 invalid, 40163 used)."""
        if code.startswith(SANDBOX_CODE_PREFIX):
            openid = code[len(SANDBOX_CODE_PREFIX) :]
            if OPENID_PATTERN.match(openid):
                return openid, None
            return None, self._error(40029, "invalid code")
        with self._lock:
            if code in self._used_codes:
                return None, self._error(40163, "code been used")
            issued = self._issued_codes.get(code)
            if issued is None or issued[0] != appid:
                return None, self._error(40029, "invalid code")
            del self._issued_codes[code]
            self._used_codes.add(code)
        return issued[1], None

    def _unionid(self, openid: str) -> dict[str, str]:
        return {"unionid": sandbox_unionid(openid)} if self.settings.with_unionid else {}

    def _jscode2session(self) -> Response:
        args = request.args
        if args.get("appid") != self.settings.wxa_appid:
            return self._error(40013, "invalid appid")
        refused = self._check_app(args.get("appid"), args.get("secret"))
        if refused:
            return refused
        if args.get("grant_type") != "authorization_code":
            return self._error(40002, "invalid grant_type")
        code = args.get("js_code") or ""
        refused = self._code_refusal(code)
        if refused:
            return refused
        openid, refused = self._openid_from_code(code, self.settings.wxa_appid)
        if refused or openid is None:
            return refused or self._error(40029, "invalid code")
        session_key = hashlib.sha256(f"{self.settings.wxa_appid}:{openid}".encode()).digest()[:16]
        return self._json({"openid": openid, "session_key": _b64(session_key), **self._unionid(openid)})

    def _phone_number(self) -> Response:
        refused = self._require_token(self.settings.wxa_appid)
        if refused:
            return refused
        code = str((_json_body() or {}).get("code") or "")
        refused = self._code_refusal(code)
        if refused:
            return refused
        digits = code[len(PHONE_CODE_PREFIX) :] if code.startswith(PHONE_CODE_PREFIX) else ""
        if not digits.isdigit() or not 5 <= len(digits) <= 20:
            return self._error(40029, "invalid code")
        return self._json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": digits,
                    "purePhoneNumber": digits,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(time.time()), "appid": self.settings.wxa_appid},
                },
            }
        )

    def _wxacode_unlimit(self) -> Response:
        """wxacode.getUnlimited: the image itself, or WeChat's JSON refusal.

        WeChat draws a round mini-program code as a JPEG; the fake draws a plain QR code of
        ``<page>?scene=<scene>`` as a PNG (``image/png``; no JPEG encoder without Pillow) about
        ``width`` pixels square, so a test can read back what a phone would open.
        """
        refused = self._require_token(self.settings.wxa_appid)
        if refused:
            return refused
        payload = _json_body()
        if not isinstance(payload, dict):
            return self._error(47001, "data format error")
        scene, page, width = payload.get("scene"), payload.get("page"), payload.get("width", 430)
        check_path = payload.get("check_path", True)
        if not isinstance(scene, str) or not 1 <= len(scene) <= 32:
            return self._error(40169, "invalid length for scene, or the data is not json string")
        if not WXA_SCENE_PATTERN.match(scene):
            return self._error(40129, "invalid scene")
        if (
            isinstance(width, bool)
            or not isinstance(width, int)
            or not isinstance(check_path, bool)
            or not isinstance(page, str | None)
            or not isinstance(payload.get("auto_color", False), bool)
            or not isinstance(payload.get("is_hyaline", False), bool)
        ):
            return self._error(47001, "data format error")
        if payload.get("env_version", "release") not in ("release", "trial", "develop"):
            return self._error(40097, "invalid args")
        page = page or self.settings.wxa_pages[0]
        if page.startswith("/") or "?" in page or (check_path and page not in self.settings.wxa_pages):
            return self._error(41030, "invalid page")
        return Response(_qr_png(f"{page}?scene={scene}", min(max(width, 280), 1280)), mimetype="image/png")

    # -- official account -------------------------------------------------------------------------

    def _menu_create(self) -> Response:
        refused = self._require_token(self.settings.mp_appid)
        if refused:
            return refused
        payload = _json_body()
        problem = _menu_problem(payload)
        if problem:
            return self._error(*problem)
        with self._lock:
            self.menu = payload
        return self._json({"errcode": 0, "errmsg": "ok"})

    def _menu_get(self) -> Response:
        refused = self._require_token(self.settings.mp_appid)
        if refused:
            return refused
        with self._lock:
            menu = self.menu
        if menu is None:
            return self._error(46003, "menu no exist")
        return self._json({"menu": {"button": menu["button"]}})

    def _template_send(self) -> Response:
        refused = self._require_token(self.settings.mp_appid)
        if refused:
            return refused
        payload = _json_body() or {}
        if not payload.get("touser") or not OPENID_PATTERN.match(str(payload["touser"])):
            return self._error(40003, "invalid openid")
        if not payload.get("template_id"):
            return self._error(40037, "invalid template_id")
        if not isinstance(payload.get("data"), dict):
            return self._error(47001, "data format error")
        with self._lock:
            # WeChat sends one message per (openid, client_msg_id): a repeat answers with the first msgid.
            client_msg_id = payload.get("client_msg_id")
            if client_msg_id and (payload["touser"], client_msg_id) in self._client_msg_ids:
                return self._json(
                    {"errcode": 0, "errmsg": "ok", "msgid": self._client_msg_ids[payload["touser"], client_msg_id]}
                )
            self.template_messages.append(payload)
            msgid = len(self.template_messages)
            if client_msg_id:
                self._client_msg_ids[payload["touser"], client_msg_id] = msgid
        return self._json({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def _user_info(self) -> Response:
        refused = self._require_token(self.settings.mp_appid)
        if refused:
            return refused
        openid = request.args.get("openid") or ""
        if not OPENID_PATTERN.match(openid):
            return self._error(40003, "invalid openid")
        return self._json(
            {
                "subscribe": 1,
                "openid": openid,
                "language": "zh_CN",
                "subscribe_time": 1700000000,
                "remark": "",
                "groupid": 0,
                "tagid_list": [],
                "subscribe_scene": "ADD_SCENE_QR_CODE",
                "qr_scene": 0,
                "qr_scene_str": "",
                **self._unionid(openid),
            }
        )

    # -- member cards (卡券 会员卡) -----------------------------------------------------------------

    def give_member_card(self, openid: str, card_id: str, *, code: str | None = None, **form: str) -> str:
        """``openid`` takes member card ``card_id`` into their card wallet and fills in the activation
        form (``phone``, ``name``, ``birthday`` as the user typed them); returns the card's code."""
        code = code or str(100000000000 + secrets.randbelow(900000000000))
        names = {"phone": "USER_FORM_INFO_FLAG_MOBILE", "name": "USER_FORM_INFO_FLAG_NAME"}
        names["birthday"] = "USER_FORM_INFO_FLAG_BIRTHDAY"
        with self._lock:
            self.member_cards[code] = FakeMemberCard(card_id, code, openid, {names[k]: v for k, v in form.items()})
        return code

    def _member_card(self) -> tuple[FakeMemberCard | None, dict[str, Any], Response | None]:
        refused = self._require_token(self.settings.mp_appid)
        if refused:
            return None, {}, refused
        payload = _json_body() or {}
        with self._lock:
            card = self.member_cards.get(str(payload.get("code") or ""))
        if card is None or (payload.get("card_id") and payload["card_id"] != card.card_id):
            return None, payload, self._error(40056, "invalid serial code")
        return card, payload, None

    def _membercard_userinfo(self) -> Response:
        card, _payload, refused = self._member_card()
        if refused or card is None:
            return refused or self._error(40056, "invalid serial code")
        fields = [{"name": name, "value": value} for name, value in card.form.items()]
        return self._json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "openid": card.openid,
                "nickname": "",
                "membership_number": card.membership_number,
                "bonus": card.bonus,
                "balance": card.balance,
                "sex": "",
                "user_info": {"common_field_list": fields, "custom_field_list": []},
                "user_card_status": "NORMAL",
                "has_active": bool(card.membership_number),
            }
        )

    def _membercard_activate(self) -> Response:
        card, payload, refused = self._member_card()
        if refused or card is None:
            return refused or self._error(40056, "invalid serial code")
        number = str(payload.get("membership_number") or "")
        if not number:
            return self._error(47001, "data format error: membership_number")
        with self._lock:
            if card.membership_number:  # the fake's own refusal of a second activation of one code
                return self._error(40056, "invalid serial code: already activated")
            card.membership_number = number
            card.balance = int(payload.get("init_balance") or 0)
            card.bonus = int(payload.get("init_bonus") or 0)
            card.activations += 1
        return self._json({"errcode": 0, "errmsg": "ok"})

    def _membercard_updateuser(self) -> Response:
        card, payload, refused = self._member_card()
        if refused or card is None:
            return refused or self._error(40056, "invalid serial code")
        with self._lock:
            if not card.membership_number:
                return self._error(40056, "invalid serial code: not activated")
            # WeChat: the totals (bonus, balance) win over the deltas (add_bonus, add_balance).
            bonus, balance = payload.get("bonus"), payload.get("balance")
            card.bonus = int(bonus) if bonus is not None else card.bonus + int(payload.get("add_bonus") or 0)
            card.balance = int(balance) if balance is not None else card.balance + int(payload.get("add_balance") or 0)
            card.updates.append(dict(payload))
        result = {"result_bonus": card.bonus, "result_balance": card.balance, "openid": card.openid}
        return self._json({"errcode": 0, "errmsg": "ok", **result})

    # -- web OAuth --------------------------------------------------------------------------------

    def _authorize_page(self) -> Response:
        source = request.form if request.method == "POST" else request.args
        appid = source.get("appid") or ""
        redirect_uri = source.get("redirect_uri") or ""
        scope = source.get("scope") or "snsapi_base"
        state = source.get("state") or ""
        if appid != self.settings.mp_appid:
            return Response("<p>appid 参数错误</p>", status=400, mimetype="text/html")
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return Response("<p>redirect_uri 参数错误</p>", status=400, mimetype="text/html")
        if scope not in ("snsapi_base", "snsapi_userinfo"):
            return Response("<p>scope 参数错误</p>", status=400, mimetype="text/html")
        openid = source.get("openid")
        if openid is not None:  # the form was sent (or a script passed ?openid=): grant it
            if not OPENID_PATTERN.match(openid):
                return Response("<p>openid 只能包含字母、数字、- 和 _</p>", status=400, mimetype="text/html")
            with self._lock:
                self._oauth_scopes[openid] = scope
            query = urlencode({"code": f"{SANDBOX_CODE_PREFIX}{openid}", "state": state})
            return redirect(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}")  # type: ignore[return-value]
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{escape(value)}">'
            for name, value in (("appid", appid), ("redirect_uri", redirect_uri), ("scope", scope), ("state", state))
        )
        page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>微信授权（沙箱）</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em">
<h1>微信授权（沙箱）</h1>
<p>这是模拟的微信网页授权页。输入一个 openid，就以这个微信用户的身份登录。</p>
<form method="post">{hidden}
<label>openid <input name="openid" required pattern="[A-Za-z0-9_\\-]{{1,64}}" value="demo-alice"></label>
<button type="submit">同意授权</button></form>
<p><small>redirect_uri: {escape(redirect_uri)}<br>scope: {escape(scope)}</small></p>
</body></html>"""
        return Response(page, mimetype="text/html")

    def _oauth_access_token(self) -> Response:
        args = request.args
        if args.get("appid") != self.settings.mp_appid:
            return self._error(40013, "invalid appid")
        refused = self._check_app(args.get("appid"), args.get("secret"))
        if refused:
            return refused
        if args.get("grant_type") != "authorization_code":
            return self._error(40002, "invalid grant_type")
        code = args.get("code") or ""
        refused = self._code_refusal(code)
        if refused:
            return refused
        openid, refused = self._openid_from_code(code, self.settings.mp_appid)
        if refused or openid is None:
            return refused or self._error(40029, "invalid code")
        with self._lock:
            scope = self._oauth_scopes.get(openid, "snsapi_base")
            token = f"fake-oauth-{secrets.token_urlsafe(18)}"
            self._oauth_tokens[token] = _OAuthToken(openid, scope, time.time() + self.settings.token_ttl)
        return self._json(
            {
                "access_token": token,
                "expires_in": self.settings.token_ttl,
                "refresh_token": f"fake-refresh-{secrets.token_urlsafe(18)}",
                "openid": openid,
                "scope": scope,
                "is_snapshotuser": 0,
                **self._unionid(openid),
            }
        )

    def _userinfo(self) -> Response:
        token = request.args.get("access_token") or ""
        with self._lock:
            info = self._oauth_tokens.get(token)
        if info is None:
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        if info.expires_at <= time.time():
            return self._error(42001, "access_token expired")
        if request.args.get("openid") != info.openid:
            return self._error(40003, "invalid openid")
        if info.scope != "snsapi_userinfo":
            return self._error(48001, "api unauthorized")
        return self._json(
            {
                "openid": info.openid,
                "nickname": f"沙箱用户 {info.openid}",
                "sex": 0,
                "province": "",
                "city": "",
                "country": "",
                "headimgurl": "",
                "privilege": [],
                **self._unionid(info.openid),
            }
        )

    # -- WeChat Pay -------------------------------------------------------------------------------

    def _pay_request(self) -> tuple[dict[str, str] | None, Response | None]:
        """The request's fields once its XML, merchant and signature check out (WeChat's order)."""
        fields = _flat_xml(request.get_data(cache=True))
        if fields is None:
            return None, self._pay_fail("XML格式错误")
        if fields.get("mch_id") != self.settings.pay_mch_id:
            return None, self._pay_fail("mch_id参数格式错误")
        if fields.get("appid") not in (self.settings.mp_appid, self.settings.wxa_appid):
            return None, self._pay_fail("appid和mch_id不匹配")
        if fields.get("sign_type", "MD5") not in ("MD5", "HMAC-SHA256"):
            return None, self._pay_fail("sign_type参数格式错误")
        if not fields.get("nonce_str"):
            return None, self._pay_fail("缺少参数nonce_str")
        if not pay_signature_ok(fields, self.settings.pay_api_key):
            return None, self._pay_fail("签名错误")
        return fields, None

    def _find_order(self, fields: Mapping[str, str]) -> FakeOrder | None:
        out_trade_no = fields.get("out_trade_no")
        if out_trade_no:
            return self.orders.get(out_trade_no)
        transaction_id = fields.get("transaction_id")
        return next((o for o in self.orders.values() if o.transaction_id and o.transaction_id == transaction_id), None)

    def _unifiedorder(self) -> Response:
        fields, refused = self._pay_request()
        if refused or fields is None:
            return refused  # type: ignore[return-value]
        for name in ("body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"):
            if not fields.get(name):
                return self._pay_fail(f"缺少参数{name}")
        if not fields["total_fee"].isdigit() or int(fields["total_fee"]) <= 0:
            return self._pay_fail("total_fee参数格式错误")
        if fields["trade_type"] == "JSAPI" and not fields.get("openid"):
            return self._pay_result_fail("PARAM_ERROR", "JSAPI支付必须传openid", fields)
        order = FakeOrder(
            appid=fields["appid"],
            mch_id=fields["mch_id"],
            out_trade_no=fields["out_trade_no"],
            total_fee=int(fields["total_fee"]),
            notify_url=fields["notify_url"],
            trade_type=fields["trade_type"],
            body=fields["body"],
            openid=fields.get("openid", ""),
            attach=fields.get("attach", ""),
            sign_type=fields.get("sign_type", "MD5"),
            prepay_id=f"wx{_now_text()}{secrets.token_hex(9)}",
        )
        with self._lock:
            existing = self.orders.get(order.out_trade_no)
            if existing is not None:
                if existing.trade_state == "SUCCESS":
                    return self._pay_result_fail("ORDERPAID", "该订单已支付", fields)
                if existing.trade_state == "CLOSED":
                    return self._pay_result_fail("ORDERCLOSED", "该订单已关闭", fields)
                same = (existing.appid, existing.total_fee, existing.openid, existing.body) == (
                    order.appid,
                    order.total_fee,
                    order.openid,
                    order.body,
                )
                if not same:
                    return self._pay_result_fail("INVALID_REQUEST", "201 商户订单号重复", fields)
                order = existing
            else:
                self.orders[order.out_trade_no] = order
        answer = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": order.appid,
            "result_code": "SUCCESS",
            "prepay_id": order.prepay_id,
            "trade_type": order.trade_type,
        }
        if order.trade_type == "NATIVE":
            answer["code_url"] = f"weixin://wxpay/bizpayurl?pr={order.prepay_id[-8:]}"
        return self._pay_xml(answer, order.sign_type)

    def _orderquery(self) -> Response:
        fields, refused = self._pay_request()
        if refused or fields is None:
            return refused  # type: ignore[return-value]
        with self._lock:
            order = self._find_order(fields)
            if order is None:
                return self._pay_result_fail("ORDERNOTEXIST", "订单不存在", fields)
            answer: dict[str, Any] = {
                "return_code": "SUCCESS",
                "return_msg": "OK",
                "appid": order.appid,
                "result_code": "SUCCESS",
                "out_trade_no": order.out_trade_no,
                "openid": order.openid,
                "trade_type": order.trade_type,
                "trade_state": order.trade_state,
                "trade_state_desc": {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "CLOSED": "订单已关闭"}.get(
                    order.trade_state, order.trade_state
                ),
                "total_fee": order.total_fee,
                "fee_type": "CNY",
                "attach": order.attach,
            }
            if order.trade_state == "SUCCESS":
                answer.update(
                    transaction_id=order.transaction_id,
                    time_end=order.time_end,
                    cash_fee=order.total_fee,
                    bank_type="OTHERS",
                    is_subscribe="N",
                )
        return self._pay_xml(answer, fields.get("sign_type") or "MD5")

    def _closeorder(self) -> Response:
        fields, refused = self._pay_request()
        if refused or fields is None:
            return refused  # type: ignore[return-value]
        with self._lock:
            order = self.orders.get(fields.get("out_trade_no") or "")
            if order is None:
                return self._pay_result_fail("ORDERNOTEXIST", "订单不存在", fields)
            if order.trade_state == "SUCCESS":
                return self._pay_result_fail("ORDERPAID", "订单已支付，不能发起关单", fields)
            order.trade_state = "CLOSED"
        return self._pay_xml(
            {"return_code": "SUCCESS", "return_msg": "OK", "appid": order.appid, "result_code": "SUCCESS"},
            fields.get("sign_type") or "MD5",
        )

    def _refund(self) -> Response:
        # WeChat also requires the merchant's client certificate here; the fake cannot see TLS.
        fields, refused = self._pay_request()
        if refused or fields is None:
            return refused  # type: ignore[return-value]
        for name in ("out_refund_no", "total_fee", "refund_fee"):
            if not fields.get(name):
                return self._pay_fail(f"缺少参数{name}")
        if not fields["refund_fee"].isdigit() or not fields["total_fee"].isdigit() or int(fields["refund_fee"]) <= 0:
            return self._pay_fail("refund_fee参数格式错误")
        refund_fee, total_fee = int(fields["refund_fee"]), int(fields["total_fee"])
        with self._lock:
            order = self._find_order(fields)
            if order is None:
                return self._pay_result_fail("ORDERNOTEXIST", "订单不存在", fields)
            if order.trade_state != "SUCCESS" or order.transaction_id is None:
                return self._pay_result_fail("TRADE_STATE_ERROR", "订单状态错误", fields)
            if total_fee != order.total_fee:
                return self._pay_result_fail("INVALID_REQUEST", "订单金额与原订单不符", fields)
            refund = self.refunds.get(fields["out_refund_no"])
            if refund is not None:
                if (refund.out_trade_no, refund.refund_fee) != (order.out_trade_no, refund_fee):
                    return self._pay_result_fail("INVALID_REQUEST", "退款单号已用于另一笔退款", fields)
            else:
                if order.refunded_fee + refund_fee > order.total_fee:
                    return self._pay_result_fail("INVALID_REQUEST", "退款金额大于可退金额", fields)
                refund = FakeRefund(
                    out_refund_no=fields["out_refund_no"],
                    out_trade_no=order.out_trade_no,
                    transaction_id=order.transaction_id,
                    refund_id=f"5030{_now_text()}{secrets.randbelow(10**9):09d}",
                    refund_fee=refund_fee,
                    total_fee=order.total_fee,
                    notify_url=fields.get("notify_url") or None,
                )
                self.refunds[refund.out_refund_no] = refund
                order.refunded_fee += refund_fee
        return self._pay_xml(
            {
                "return_code": "SUCCESS",
                "return_msg": "OK",
                "appid": order.appid,
                "result_code": "SUCCESS",
                "transaction_id": refund.transaction_id,
                "out_trade_no": refund.out_trade_no,
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_fee": refund.refund_fee,
                "total_fee": refund.total_fee,
                "cash_fee": refund.total_fee,
                "cash_refund_fee": refund.refund_fee,
                "refund_channel": "",
            },
            fields.get("sign_type") or "MD5",
        )

    def _sandbox_pay_page(self) -> Response:
        """The member's "pay" step in the sandbox: confirm, and the fake pays and notifies."""
        source = request.form if request.method == "POST" else request.args
        prepay_id = source.get("prepay_id") or ""
        return_to = source.get("return_to") or ""
        if not return_to.startswith("/") or return_to.startswith("//"):
            return_to = ""  # only a path on the page's own site: never an open redirect
        with self._lock:
            order = next((o for o in self.orders.values() if o.prepay_id == prepay_id), None)
        if order is None:
            return Response("<p>订单不存在（prepay_id 无效）</p>", status=404, mimetype="text/html")
        if request.method == "POST" and order.trade_state == "NOTPAY":
            result = self.pay(order.out_trade_no)
            if return_to:
                return redirect(return_to)  # type: ignore[return-value]
            state = "已通知商户" if result.acknowledged else f"商户未确认（HTTP {result.status}）"
            return Response(f"<p>支付成功，{state}。</p>", mimetype="text/html")
        amount = f"{order.total_fee // 100}.{order.total_fee % 100:02d}"
        button = (
            f'<form method="post"><input type="hidden" name="prepay_id" value="{escape(prepay_id)}">'
            f'<input type="hidden" name="return_to" value="{escape(return_to)}">'
            '<button type="submit">确认支付</button></form>'
            if order.trade_state == "NOTPAY"
            else f"<p>订单状态：{escape(order.trade_state)}</p>"
        )
        page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>微信支付（沙箱）</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em">
<h1>微信支付（沙箱）</h1><p>{escape(order.body)}</p><p style="font-size:2em">¥{amount}</p>{button}
</body></html>"""
        return Response(page, mimetype="text/html")

    # -- what WeChat sends: payment and refund notifications ---------------------------------------

    def order_by_prepay_id(self, prepay_id: str) -> FakeOrder | None:
        with self._lock:
            return next((o for o in self.orders.values() if o.prepay_id == prepay_id), None)

    def mark_paid(self, out_trade_no: str) -> FakeOrder:
        """The member paid: the order is SUCCESS (orderquery says so) with a transaction id."""
        with self._lock:
            order = self.orders[out_trade_no]
            if order.trade_state == "CLOSED":
                raise ValueError(f"order {out_trade_no} is closed")
            if order.trade_state != "SUCCESS":
                order.trade_state = "SUCCESS"
                order.transaction_id = f"4200{_now_text()}{secrets.randbelow(10**10):010d}"
                order.time_end = _now_text()
            return order

    def payment_notification(self, out_trade_no: str, **overrides: Any) -> str:
        """The signed XML WeChat posts to notify_url for a paid order.

        ``overrides`` replace fields before signing (a wrong ``total_fee`` or ``appid`` arrives
        correctly signed, as a confused or compromised merchant setup would produce); pass
        ``sign="..."`` to send a bad signature instead, ``include_sign_type=False`` to leave
        ``sign_type`` out of an HMAC-SHA256 notification as WeChat does.
        """
        with self._lock:
            order = self.orders[out_trade_no]
            if order.trade_state != "SUCCESS":
                raise ValueError(f"order {out_trade_no} is not paid; call mark_paid() or pay() first")
            fields: dict[str, Any] = {
                "appid": order.appid,
                "mch_id": order.mch_id,
                "nonce_str": secrets.token_hex(16),
                "result_code": "SUCCESS",
                "return_code": "SUCCESS",
                "openid": order.openid,
                "is_subscribe": "N",
                "trade_type": order.trade_type,
                "bank_type": "OTHERS",
                "total_fee": order.total_fee,
                "cash_fee": order.total_fee,
                "fee_type": "CNY",
                "transaction_id": order.transaction_id,
                "out_trade_no": order.out_trade_no,
                "attach": order.attach,
                "time_end": order.time_end,
            }
            sign_type = order.sign_type
        forced_sign = overrides.pop("sign", None)
        # WeChat leaves sign_type out of HMAC-SHA256 notifications; include_sign_type=True sends it anyway
        include_sign_type = overrides.pop("include_sign_type", self.settings.notify_sign_type_field)
        fields.update(overrides)
        if sign_type != "MD5" and include_sign_type:
            fields["sign_type"] = sign_type
        xml = signed_pay_xml(fields, self.settings.pay_api_key, sign_type)
        if forced_sign is not None:
            data = {k: v for k, v in fields.items() if v is not None and v != ""}
            xml = str(dict_to_xml(data, forced_sign))
        return xml

    def pay(self, out_trade_no: str, target: Any = None, **overrides: Any) -> NotifyResult:
        """Pay the order and send its notification (to ``target``: a Flask test client or URL, else
        the order's notify_url), as WeChat does once the member has paid."""
        self.mark_paid(out_trade_no)
        return self.notify_payment(out_trade_no, target, **overrides)

    def notify_payment(self, out_trade_no: str, target: Any = None, **overrides: Any) -> NotifyResult:
        """(Re)send the payment notification of a paid order: WeChat repeats it until acknowledged."""
        xml = self.payment_notification(out_trade_no, **overrides)
        return self._post_notification(target, self.orders[out_trade_no].notify_url, xml)

    def refund_notification(self, out_refund_no: str, **overrides: Any) -> str:
        """The refund result WeChat posts: ``req_info`` AES-256-ECB encrypted with md5(API key)."""
        with self._lock:
            refund = self.refunds[out_refund_no]
            order = self.orders[refund.out_trade_no]
            if refund.status == "PROCESSING":
                refund.status = "SUCCESS"
                refund.success_time = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
            inner: dict[str, Any] = {
                "out_refund_no": refund.out_refund_no,
                "out_trade_no": refund.out_trade_no,
                "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
                "refund_fee": refund.refund_fee,
                "refund_id": refund.refund_id,
                "refund_recv_accout": "支付用户零钱",
                "refund_request_source": "API",
                "refund_status": refund.status,
                "settlement_refund_fee": refund.refund_fee,
                "settlement_total_fee": refund.total_fee,
                "success_time": refund.success_time,
                "total_fee": refund.total_fee,
                "transaction_id": refund.transaction_id,
            }
        inner.update(overrides)
        plain = "<root>" + "".join(f"<{k}>{_cdata(str(v))}</{k}>" for k, v in inner.items()) + "</root>"
        key = hashlib.md5(self.settings.pay_api_key.encode()).hexdigest().encode()
        req_info = RefundCrypto(key).encrypt(plain).decode()
        return str(
            dict_to_xml(
                {
                    "return_code": "SUCCESS",
                    "appid": order.appid,
                    "mch_id": order.mch_id,
                    "nonce_str": secrets.token_hex(16),
                    "req_info": req_info,
                }
            )
        )

    def notify_refund(self, out_refund_no: str, target: Any = None, **overrides: Any) -> NotifyResult:
        """Complete the refund and send its notification (to ``target`` or the refund's notify_url)."""
        xml = self.refund_notification(out_refund_no, **overrides)
        return self._post_notification(target, self.refunds[out_refund_no].notify_url, xml)

    def _post_notification(self, target: Any, notify_url: str | None, xml: str) -> NotifyResult:
        if target is None:
            if not notify_url:
                raise ValueError("no notify_url recorded and no target given")
            target = notify_url
        status, body = _post(target, notify_url, {}, xml.encode("utf-8"), "text/xml")
        return NotifyResult(status, body, xml)

    # -- what WeChat sends: server-URL messages --------------------------------------------------

    def text_message(self, openid: str, content: str, *, msg_id: int | None = None) -> str:
        msg_id = msg_id if msg_id is not None else secrets.randbelow(10**18)
        return self._inbound(openid, "text", f"<Content>{_cdata(content)}</Content><MsgId>{msg_id}</MsgId>")

    def click_event(self, openid: str, key: str) -> str:
        return self._inbound(openid, "event", f"<Event>{_cdata('CLICK')}</Event><EventKey>{_cdata(key)}</EventKey>")

    def event(self, openid: str, event: str, **fields: str) -> str:
        extra = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in fields.items())
        return self._inbound(openid, "event", f"<Event>{_cdata(event)}</Event>{extra}")

    def card_event(self, openid: str, event: str, card_id: str, code: str, **fields: str) -> str:
        """A member-card event as WeChat sends it (``user_get_card``, ``submit_membercard_user_info``);
        post it signed with ``mp_post``."""
        if event == "user_get_card":
            fields = {"IsGiveByFriend": "0", "OuterId": "0", "IsRestoreMemberCard": "0", **fields}
        return self.event(openid, event, CardId=card_id, UserCardCode=code, **fields)

    def _inbound(self, openid: str, msg_type: str, rest: str) -> str:
        return (
            f"<xml><ToUserName>{_cdata(self.settings.mp_original_id)}</ToUserName>"
            f"<FromUserName>{_cdata(openid)}</FromUserName><CreateTime>{int(time.time())}</CreateTime>"
            f"<MsgType>{_cdata(msg_type)}</MsgType>{rest}</xml>"
        )

    def mp_query(self, *, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
        """The signed query string WeChat puts on a request to the server URL (plain mode)."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        return {
            "signature": server_signature(self.settings.mp_token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }

    def mp_verify(
        self, target: Any, echostr: str = "fake-echostr-1234567890", *, path: str = "/wechat/mp"
    ) -> tuple[int, str]:
        """WeChat's GET check of the server URL; answers (status, body): body must equal echostr."""
        query = {**self.mp_query(), "echostr": echostr}
        return _get(target, path, query)

    def mp_post(
        self,
        target: Any,
        xml: str,
        *,
        encrypt: bool | None = None,
        compatible: bool = False,
        path: str = "/wechat/mp",
        timestamp: str | None = None,
        nonce: str | None = None,
    ) -> MpReply:
        """POST ``xml`` to our server URL signed as WeChat does (``target``: a Flask test client, whose
        request goes to ``path``, or the full URL). ``encrypt`` sends it in safe mode (the default when
        the fake has an EncodingAESKey, as WeChat does once one is set), ``encrypt=False`` in plain
        mode, ``compatible`` in compatible mode (plaintext beside the ciphertext); an encrypted reply is
        checked and decrypted."""
        if encrypt is None:
            encrypt = bool(self.settings.mp_aes_key) and not compatible
        query = self.mp_query(timestamp=timestamp, nonce=nonce)
        fields = _flat_xml(xml) or {}
        if fields.get("FromUserName"):
            query["openid"] = fields["FromUserName"]
        aes = encrypt or compatible
        crypto = WeChatCrypto(self.settings.mp_token, self.settings.mp_aes_key, self.settings.mp_appid)
        body = xml
        if aes:
            envelope = _flat_xml(crypto.encrypt_message(xml, query["nonce"], query["timestamp"])) or {}
            query["encrypt_type"] = "aes"
            query["msg_signature"] = envelope["MsgSignature"]
            encrypted = f"<Encrypt>{_cdata(envelope['Encrypt'])}</Encrypt>"
            if compatible:
                body = xml.replace("</xml>", encrypted + "</xml>")
            else:
                body = f"<xml><ToUserName>{_cdata(self.settings.mp_original_id)}</ToUserName>{encrypted}</xml>"
        status, text = _post(target, None, query, body.encode("utf-8"), "text/xml", path=path)
        reply_fields = _flat_xml(text)
        if aes and reply_fields and "Encrypt" in reply_fields:
            plain = crypto.decrypt_message(
                reply_fields, reply_fields.get("MsgSignature"), reply_fields.get("TimeStamp"), reply_fields.get("Nonce")
            )
            return MpReply(status, text, plain, True, _flat_xml(plain))
        return MpReply(status, text, text, False, reply_fields)

    # -- for apps pointed at this fake ------------------------------------------------------------

    def app_config(self, base_url: str, pay_base_url: str) -> dict[str, Any]:
        """The WECHAT_* config keys that make an app talk to this fake at these roots."""
        s = self.settings
        return {
            "WECHAT_API_BASE_URL": base_url,
            "WECHAT_PAY_API_BASE_URL": pay_base_url,
            "WECHAT_OAUTH_BASE_URL": base_url + "connect/",
            "WECHAT_MP_APPID": s.mp_appid,
            "WECHAT_MP_SECRET": s.mp_secret,
            "WECHAT_MP_TOKEN": s.mp_token,
            "WECHAT_MP_AES_KEY": s.mp_aes_key,
            "WECHAT_WXA_APPID": s.wxa_appid,
            "WECHAT_WXA_SECRET": s.wxa_secret,
            "WECHAT_PAY_MCH_ID": s.pay_mch_id,
            "WECHAT_PAY_API_KEY": s.pay_api_key,
        }


def create_fake_app(settings: FakeSettings | None = None) -> Flask:
    """The fake as a WSGI app; its state is ``app.extensions["fake_wechat"]``."""
    fake = FakeWeChat(settings)
    fake.app.extensions["fake_wechat"] = fake
    return fake.app


# ----------------------------------------------------------------------------------------------
# Menu validation (the checks WeChat makes that a typo in wechat_menu.json would trip)

_BUTTON_TYPES = {
    "click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
    "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id", "article_view_limited",
}  # fmt: skip


def _menu_problem(payload: Any) -> tuple[int, str] | None:
    buttons = payload.get("button") if isinstance(payload, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016, "invalid button size"
    for button in buttons:
        subs = button.get("sub_button") if isinstance(button, dict) else None
        if not isinstance(button, dict) or not button.get("name"):
            return 40018, "invalid button name size"
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                return 40023, "invalid sub button size"
            for sub in subs:
                problem = _button_problem(sub)
                if problem:
                    return problem
        else:
            problem = _button_problem(button)
            if problem:
                return problem
    return None


def _button_problem(button: Any) -> tuple[int, str] | None:
    if not isinstance(button, dict) or not button.get("name"):
        return 40018, "invalid button name size"
    kind = button.get("type")
    if kind not in _BUTTON_TYPES:
        return 40017, "invalid button type"
    if kind in ("view", "miniprogram") and not str(button.get("url", "")).startswith(("http://", "https://")):
        return 40055, "invalid button url domain"
    if kind == "click" and not button.get("key"):
        return 40019, "invalid button key size"
    return None


# ----------------------------------------------------------------------------------------------
# Sending to our app: a Flask test client or a URL


def _qr_png(text: str, width: int) -> bytes:
    """A PNG QR code of ``text``, at most ``width`` pixels square."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    code.box_size = max(1, width // (code.modules_count + 2 * code.border))
    buffer = io.BytesIO()
    code.make_image(image_factory=qrcode.image.pure.PyPNGImage).save(buffer)
    return buffer.getvalue()


def sandbox_unionid(openid: str) -> str:
    """The unionid the sandbox answers for ``openid`` in both apps (demo members are created with it)."""
    return f"{SANDBOX_UNIONID_PREFIX}{openid}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _post(
    target: Any,
    notify_url: str | None,
    query: Mapping[str, str],
    body: bytes,
    content_type: str,
    *,
    path: str | None = None,
) -> tuple[int, str]:
    if isinstance(target, str):
        response = requests.post(
            target, params=dict(query), data=body, headers={"Content-Type": content_type}, timeout=HTTP_TIMEOUT_SECONDS
        )
        return response.status_code, response.text
    # A Flask test client: the path comes from the notify_url WeChat would have used.
    route = path or (urlsplit(notify_url).path if notify_url else "/")
    result = target.post(route, query_string=dict(query), data=body, content_type=content_type)
    return result.status_code, result.get_data(as_text=True)


def _get(target: Any, path: str, query: Mapping[str, str]) -> tuple[int, str]:
    if isinstance(target, str):
        response = requests.get(target, params=dict(query), timeout=HTTP_TIMEOUT_SECONDS)
        return response.status_code, response.text
    result = target.get(path, query_string=dict(query))
    return result.status_code, result.get_data(as_text=True)


# ----------------------------------------------------------------------------------------------
# A real server for tests


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one log line per fake API call drowns the test output


class FakeWeChatServer(FakeWeChat):
    """The fake on ``127.0.0.1`` at a free port, served from a background thread (threaded, so
    concurrent clients and slow answers do not block each other).

        fake = FakeWeChatServer().start()
        config.__dict__.update(fake.config())   # or setattr each key
        ...
        fake.stop()
    """

    def __init__(self, settings: FakeSettings | None = None) -> None:
        super().__init__(settings)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeWeChatServer:
        if self._server is None:
            self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler)
            # A short poll interval: stop() waits for the loop to notice, once per test.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-wechat", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None

    def __enter__(self) -> FakeWeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeWeChatServer is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def base_url(self) -> str:
        """Stands for https://api.weixin.qq.com/."""
        return f"{self.origin}/{API_PREFIX}/"

    @property
    def pay_base_url(self) -> str:
        """Stands for https://api.mch.weixin.qq.com/."""
        return f"{self.origin}/{PAY_PREFIX}/"

    @property
    def oauth_base_url(self) -> str:
        """Stands for https://open.weixin.qq.com/connect/."""
        return f"{self.base_url}connect/"

    def config(self) -> dict[str, Any]:
        """Config keys pointing an app at this server, with the fake's credentials."""
        return self.app_config(self.base_url, self.pay_base_url)
