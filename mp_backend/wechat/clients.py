"""The one place that builds wechatpy clients, and the few calls other code makes through them.

wechatpy is used unchanged, through subclasses that
- send every request to the configured base URLs (the sandbox, the test fake, or WeChat itself):
  wechatpy hard-codes ``https://api.weixin.qq.com/`` in ``fetch_access_token``, in the
  ``API_BASE_URL`` of each API group (wxa, card, datacube, ...) and in a few full URLs
  (customservice, semantic); the client rewrites that root on every request it sends;
- put a timeout on every HTTP call (wechatpy's default is none);
- take the access token from WeChat's *stable* token endpoint, keep it in the shared session storage
  (Redis when configured), let only one process refresh it at a time, and on 40001 / 40014 / 42001
  refresh once and retry once (wechatpy's own ``auto_retry`` retries without limit, so it is off).

Errors stay wechatpy's exceptions (``WeChatClientException`` and subclasses, transport failures
included) until ``translate_errors()`` turns them into AppErrors at the edge of a service call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NotRequired, TypedDict

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException, WeChatPayException
from wechatpy.oauth import WeChatOAuth
from wechatpy.pay import WeChatPay
from wechatpy.session import SessionStorage

from .errors import UpstreamError, WeChatCodeInvalid, WeChatLoginBlocked, WeChatRateLimited
from .shared import DailyCounter, MemoryDailyCounter
from .state import WeChatSettings, current_state
from .tokens import TokenLock

log = logging.getLogger(__name__)

OFFICIAL_API_ROOT = "https://api.weixin.qq.com/"
OFFICIAL_PAY_ROOT = "https://api.mch.weixin.qq.com/"
OFFICIAL_OAUTH_ROOT = "https://open.weixin.qq.com/connect/"

# invalid credential / invalid access_token / access_token expired: a fresh token may fix these.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
CODE_ERRCODES = frozenset({40029, 40163})  # invalid code / code been used
RATE_LIMIT_ERRCODES = frozenset({45009, 45011})
LOGIN_BLOCKED_ERRCODES = frozenset({40226})
# A forced stable-token refresh invalidates the current token everywhere and WeChat allows 20 a day
# per app: never more than one per interval (30 s) per app across all processes, and at most a daily
# cap (WECHAT_FORCED_REFRESH_DAILY_CAP, 10) so that a bug or an attacker cannot spend WeChat's quota.
FORCE_REFRESH_INTERVAL_SECONDS = 30


def _rebase(url: str, official_root: str, configured_root: str) -> str:
    if url.startswith(official_root):
        return configured_root + url[len(official_root) :]
    return url


def _token_ttl(expires_in: int) -> int:
    """Keep a token for less than its life, so nobody sends one WeChat is about to expire."""
    return max(1, expires_in - min(300, expires_in // 2))


class ConfiguredWeChatClient(WeChatClient):
    """``wechatpy.WeChatClient`` (official account or mini program) bound to our configuration."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_root: str,
        session: SessionStorage,
        token_lock: TokenLock,
        timeout: float,
        daily_counter: DailyCounter | None = None,
        forced_refresh_interval: int = FORCE_REFRESH_INTERVAL_SECONDS,
        forced_refresh_daily_cap: int = 10,
    ) -> None:
        super().__init__(appid, secret, session=session, timeout=timeout, auto_retry=False)
        self.api_root = api_root
        self.API_BASE_URL = api_root + "cgi-bin/"
        self._token_lock = token_lock
        self._daily_counter = daily_counter or MemoryDailyCounter()
        self._forced_refresh_interval = forced_refresh_interval
        self._forced_refresh_daily_cap = forced_refresh_daily_cap

    # -- tokens ---------------------------------------------------------------------------------

    @property
    def access_token_key(self) -> str:
        # wechatpy's key, plus the API root when it is not WeChat's: a token issued by the sandbox or a
        # test fake is worthless elsewhere and must never be sent to (or shadow one from) WeChat.
        key = f"{self.appid}_access_token"
        return key if self.api_root == OFFICIAL_API_ROOT else f"{key}@{self.api_root}"

    @property
    def access_token(self) -> str:
        token = self.session.get(self.access_token_key)
        return token or self.refresh_access_token()

    def refresh_access_token(self, stale_token: str | None = None) -> str:
        """A token newer than ``stale_token``, fetched by at most one process at a time.

        Whoever holds the lock fetches; the others wait, then find the new token in the shared
        storage and use it without asking WeChat again.
        """
        with self._token_lock(self.access_token_key) as acquired:
            current = self.session.get(self.access_token_key)
            if current and current != stale_token:
                return str(current)
            if not acquired:
                raise WeChatClientException(None, "timed out waiting for another process to refresh the token", self)
            token = self._fetch_stable_token(force_refresh=False)
            if stale_token is not None and token == stale_token and self._may_force_refresh():
                # Normal mode hands back the current token while WeChat's own clock says it is valid;
                # WeChat has just refused it, so only a forced refresh gets a different one.
                token = self._fetch_stable_token(force_refresh=True)
            return token

    def fetch_access_token(self) -> dict[str, Any]:
        """wechatpy's hook, kept for callers that use it: a normal-mode stable token, stored."""
        self._fetch_stable_token(force_refresh=False)
        return {"access_token": self.session.get(self.access_token_key)}

    def _may_force_refresh(self) -> bool:
        key = f"{self.access_token_key}:forced"
        if self.session.get(key):
            return False
        if self._forced_refresh_interval > 0:
            self.session.set(key, 1, self._forced_refresh_interval)
        # Counted before asking, so that concurrent processes cannot all pass the cap together.
        count = self._daily_counter.increment(f"forced_refresh:{self.access_token_key}")
        if count > self._forced_refresh_daily_cap:
            log.warning(
                "not forcing an access-token refresh for %s: %s forced refreshes today (cap %s)",
                self.appid,
                count - 1,
                self._forced_refresh_daily_cap,
            )
            return False
        return True

    def _fetch_stable_token(self, *, force_refresh: bool) -> str:
        # POST cgi-bin/stable_token rather than GET cgi-bin/token: the stable token is not
        # invalidated when some other tool fetches a token for the same appid.
        url = self.api_root + "cgi-bin/stable_token"
        payload = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
            "force_refresh": force_refresh,
        }
        log.info("fetching access token for %s (force_refresh=%s)", self.appid, force_refresh)
        try:
            response = self._http.post(url, json=payload, timeout=self.timeout)
            response.raise_for_status()
            result = response.json()
        except (requests.RequestException, ValueError) as error:
            raise WeChatClientException(None, f"stable_token: {error}", self) from error
        if not isinstance(result, dict) or result.get("errcode") or not result.get("access_token"):
            errcode = result.get("errcode") if isinstance(result, dict) else None
            errmsg = result.get("errmsg") if isinstance(result, dict) else None
            raise WeChatClientException(errcode, errmsg or "no access_token in stable_token answer", self)
        expires_in = int(result.get("expires_in") or 7200)
        token = str(result["access_token"])
        self.session.set(self.access_token_key, token, _token_ttl(expires_in))
        self.expires_at = int(time.time()) + expires_in
        return token

    # -- requests -------------------------------------------------------------------------------

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        api_base_url = kwargs.pop("api_base_url", self.API_BASE_URL)
        with_token = kwargs.pop("with_token", True)
        url = url_or_endpoint if url_or_endpoint.startswith(("http://", "https://")) else api_base_url + url_or_endpoint
        url = _rebase(url, OFFICIAL_API_ROOT, self.api_root)
        kwargs.setdefault("timeout", self.timeout)
        params = kwargs.pop("params", None)
        if params is not None and not isinstance(params, Mapping):
            return self._send(method, url, params, kwargs)
        params = dict(params or {})

        if not with_token:
            # wechatpy adds a token to any params without the key; requests drops None values, so the
            # request goes out with no token and nobody fetches one for an endpoint that needs none.
            params["access_token"] = None
            return self._send(method, url, params, kwargs)
        if "access_token" in params:  # the caller's own token (e.g. OAuth): not ours to refresh
            return self._send(method, url, params, kwargs)

        token = self.access_token
        try:
            return self._send(method, url, {**params, "access_token": token}, kwargs)
        except WeChatClientException as error:
            if error.errcode not in TOKEN_ERRCODES:
                raise
            log.info("WeChat refused the access token of %s (%s); refreshing once", self.appid, error.errcode)
            fresh = self.refresh_access_token(stale_token=token)
        # One retry, outside the except block so that a second refusal surfaces as itself.
        return self._send(method, url, {**params, "access_token": fresh}, kwargs)

    def _send(self, method: str, url: str, params: Any, kwargs: dict[str, Any]) -> Any:
        # wechatpy encodes ``data`` and pops ``result_processor`` in place: give it a copy so that a
        # retry starts from the caller's arguments.
        call = dict(kwargs, params=params)
        try:
            return super()._request(method, url, **call)
        except requests.RequestException as error:
            raise WeChatClientException(None, f"{type(error).__name__}: {error}", self) from error


class ConfiguredOAuth(WeChatOAuth):
    """Web OAuth for the official account's H5 pages, against the configured roots, with a timeout."""

    def __init__(
        self,
        app_id: str,
        secret: str,
        redirect_uri: str,
        scope: str,
        state: str,
        *,
        api_root: str,
        oauth_root: str,
        timeout: float,
    ) -> None:
        super().__init__(app_id, secret, redirect_uri, scope=scope, state=state)
        self.API_BASE_URL = api_root
        self.OAUTH_BASE_URL = oauth_root
        self.timeout = timeout

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        url_or_endpoint = _rebase(url_or_endpoint, OFFICIAL_API_ROOT, self.API_BASE_URL)
        kwargs.setdefault("timeout", self.timeout)
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except requests.RequestException as error:
            raise WeChatOAuthException(None, f"{type(error).__name__}: {error}", self) from error
        except ValueError as error:  # an answer that is not JSON: not WeChat, or WeChat broken
            raise WeChatOAuthException(None, f"not JSON: {error}", self) from error


class ConfiguredPay(WeChatPay):
    """WeChat Pay API v2 against the configured root, with a timeout.

    ``sandbox`` stays off: wechatpy's sandbox means WeChat's own ``sandboxnew/`` simulator, not ours.
    """

    def __init__(
        self,
        appid: str,
        api_key: str,
        mch_id: str,
        *,
        api_root: str,
        timeout: float,
        mch_cert: str | None = None,
        mch_key: str | None = None,
    ) -> None:
        super().__init__(appid, api_key, mch_id, mch_cert=mch_cert, mch_key=mch_key, timeout=timeout, sandbox=False)
        self.API_BASE_URL = api_root

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        url_or_endpoint = _rebase(url_or_endpoint, OFFICIAL_PAY_ROOT, self.API_BASE_URL)
        kwargs.setdefault("timeout", self.timeout)
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except requests.RequestException as error:
            raise WeChatPayException(None, return_msg=f"{type(error).__name__}: {error}", client=self) from error


# -- builders -------------------------------------------------------------------------------------


def _settings() -> WeChatSettings:
    return current_state().settings


def _client(name: str, appid: str, secret: str) -> ConfiguredWeChatClient:
    state = current_state()
    settings = state.settings
    return state.cached(
        name,
        lambda: ConfiguredWeChatClient(
            appid,
            secret,
            api_root=settings.api_base_url,
            session=state.storage,
            token_lock=state.token_lock,
            timeout=settings.timeout,
            daily_counter=state.daily_counter,
            forced_refresh_interval=settings.forced_refresh_interval,
            forced_refresh_daily_cap=settings.forced_refresh_daily_cap,
        ),
    )


def mp_client() -> ConfiguredWeChatClient:
    """The official account's client (menu, template messages, user info, ...)."""
    settings = _settings()
    return _client("mp", settings.mp_appid, settings.mp_secret)


def wxa_client() -> ConfiguredWeChatClient:
    """The mini program's client: its ``.wxa`` API group, and its own access token."""
    settings = _settings()
    return _client("wxa", settings.wxa_appid, settings.wxa_secret)


def oauth_client(redirect_uri: str, scope: str = "snsapi_base", state: str = "") -> ConfiguredOAuth:
    """A new web-OAuth helper per login: it keeps that member's OAuth token on itself."""
    settings = _settings()
    return ConfiguredOAuth(
        settings.mp_appid,
        settings.mp_secret,
        redirect_uri,
        scope,
        state,
        api_root=settings.api_base_url,
        oauth_root=settings.oauth_base_url,
        timeout=settings.timeout,
    )


def pay_client(appid: str) -> ConfiguredPay:
    """WeChat Pay for a member who came through ``appid`` (the mini program's or the official account's).

    Raises ``ValueError`` for an appid that is neither of ours: paying through a third app would
    let its notifications in.
    """
    settings = _settings()
    if appid not in {settings.mp_appid, settings.wxa_appid} or not appid:
        raise ValueError(f"not one of our appids: {appid!r}")
    state = current_state()
    return state.cached(
        f"pay:{appid}",
        lambda: ConfiguredPay(
            appid,
            settings.pay_api_key,
            settings.pay_mch_id,
            api_root=settings.pay_api_base_url,
            timeout=settings.timeout,
            mch_cert=settings.pay_cert_path,
            mch_key=settings.pay_key_path,
        ),
    )


# -- errors ---------------------------------------------------------------------------------------


@contextmanager
def translate_errors(what: str = "WeChat") -> Iterator[None]:
    """Turn wechatpy's exceptions into AppErrors: ``with translate_errors("menu"): mp_client()...``.

    40029 / 40163 (a bad or reused code) → 400 wechat_code_invalid; 45009 / 45011 → 429
    wechat_rate_limited; 40226 → 403 wechat_login_blocked; anything else, including network errors,
    timeouts and HTTP 5xx → 502 wechat_unavailable (logged with WeChat's code, which the member never
    sees: it is about our configuration or WeChat's health, not something the member can fix).
    """
    try:
        yield
    except WeChatClientException as error:
        raise to_app_error(error, what) from error
    except requests.RequestException as error:  # a wechatpy path we do not wrap (e.g. pay cert errors)
        log.warning("%s: %s", what, error)
        raise UpstreamError() from error


def to_app_error(error: WeChatClientException, what: str = "WeChat") -> Exception:
    errcode = error.errcode
    if isinstance(error, WeChatPayException):
        log.warning("%s: pay error %s", what, error)
        return UpstreamError()
    if errcode in CODE_ERRCODES:
        return WeChatCodeInvalid()
    if errcode in RATE_LIMIT_ERRCODES:
        log.warning("%s: WeChat rate limit (%s)", what, errcode)
        return WeChatRateLimited()
    if errcode in LOGIN_BLOCKED_ERRCODES:
        return WeChatLoginBlocked()
    log.warning("%s failed: errcode=%s errmsg=%s", what, errcode, error.errmsg)
    return UpstreamError()


# -- calls other code makes -------------------------------------------------------------------------

MAX_CODE_LENGTH = 256


class WxaSession(TypedDict):
    openid: str
    session_key: str
    unionid: NotRequired[str]


class PhoneNumber(TypedDict):
    phone_number: str  # with the country code, as the member typed it (e.g. "+86 138...")
    pure_phone_number: str
    country_code: str


def _check_code(code: object) -> str:
    # Refuse without asking WeChat: it would answer 40029 anyway, and we spend no quota on junk.
    if not isinstance(code, str) or not code.strip() or len(code) > MAX_CODE_LENGTH:
        raise WeChatCodeInvalid()
    return code.strip()


def jscode2session(code: str) -> WxaSession:
    """Exchange a mini program ``wx.login()`` code for the member's openid (and unionid if bound)."""
    js_code = _check_code(code)
    client = wxa_client()
    with translate_errors("jscode2session"):
        # sns/jscode2session authenticates with appid + secret, not with an access token.
        result = client.get(
            "sns/jscode2session",
            api_base_url=client.api_root,
            with_token=False,
            params={
                "appid": client.appid,
                "secret": client.secret,
                "js_code": js_code,
                "grant_type": "authorization_code",
            },
        )
    if not isinstance(result, dict) or not result.get("openid") or not result.get("session_key"):
        log.warning("jscode2session: unexpected answer %r", result)
        raise UpstreamError()
    session: WxaSession = {"openid": str(result["openid"]), "session_key": str(result["session_key"])}
    if result.get("unionid"):
        session["unionid"] = str(result["unionid"])
    return session


def get_phone_number(code: str) -> PhoneNumber:
    """The phone number a member agreed to share (mini program ``getPhoneNumber`` button code)."""
    phone_code = _check_code(code)
    client = wxa_client()
    with translate_errors("getuserphonenumber"):
        result = client.post("wxa/business/getuserphonenumber", api_base_url=client.api_root, data={"code": phone_code})
    info = result.get("phone_info") if isinstance(result, dict) else None
    if not isinstance(info, dict) or not info.get("purePhoneNumber"):
        log.warning("getuserphonenumber: unexpected answer %r", result)
        raise UpstreamError()
    watermark = info.get("watermark") or {}
    if watermark.get("appid") and watermark["appid"] != client.appid:
        # The number was issued to another app: never attach it to one of our members.
        log.warning("getuserphonenumber: watermark appid %s is not ours", watermark.get("appid"))
        raise UpstreamError()
    return {
        "phone_number": str(info.get("phoneNumber") or info["purePhoneNumber"]),
        "pure_phone_number": str(info["purePhoneNumber"]),
        "country_code": str(info.get("countryCode") or ""),
    }
