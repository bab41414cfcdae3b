"""What init_app() keeps on the app: the WeChat settings, the token storage and the cached clients."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app
from wechatpy.session import SessionStorage

from .shared import DailyCounter, ImageCache, MemoryImageCache, MemorySeenOnce, SeenOnce, shared_for
from .tokens import TokenLock

EXTENSION_KEY = "wechat"
DEFAULT_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")


def _root(url: str) -> str:
    """Base URLs are joined by concatenation (as wechatpy does), so each must end with one slash."""
    return url.rstrip("/") + "/"


@dataclass(frozen=True)
class WeChatSettings:
    sandbox: bool
    mp_appid: str
    mp_secret: str
    mp_token: str
    mp_aes_key: str
    wxa_appid: str
    wxa_secret: str
    pay_mch_id: str
    pay_api_key: str
    api_base_url: str  # stands for https://api.weixin.qq.com/
    pay_api_base_url: str  # stands for https://api.mch.weixin.qq.com/
    oauth_base_url: str  # stands for https://open.weixin.qq.com/connect/
    public_base_url: str
    timeout: float
    # Forced access-token refreshes: at most one per interval, and at most ``daily_cap`` a day per app.
    forced_refresh_interval: int = 30
    forced_refresh_daily_cap: int = 10
    # The merchant's API certificate, needed by refunds (secapi/). Optional: not part of Config yet.
    pay_cert_path: str | None = None
    pay_key_path: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WeChatSettings:
        public = str(config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
        return cls(
            sandbox=bool(config.get("WECHAT_SANDBOX")),
            mp_appid=config.get("WECHAT_MP_APPID") or "",
            mp_secret=config.get("WECHAT_MP_SECRET") or "",
            mp_token=config.get("WECHAT_MP_TOKEN") or "",
            mp_aes_key=config.get("WECHAT_MP_AES_KEY") or "",
            wxa_appid=config.get("WECHAT_WXA_APPID") or "",
            wxa_secret=config.get("WECHAT_WXA_SECRET") or "",
            pay_mch_id=config.get("WECHAT_PAY_MCH_ID") or "",
            pay_api_key=config.get("WECHAT_PAY_API_KEY") or "",
            api_base_url=_root(config.get("WECHAT_API_BASE_URL") or "https://api.weixin.qq.com/"),
            pay_api_base_url=_root(config.get("WECHAT_PAY_API_BASE_URL") or "https://api.mch.weixin.qq.com/"),
            oauth_base_url=_root(config.get("WECHAT_OAUTH_BASE_URL") or "https://open.weixin.qq.com/connect/"),
            public_base_url=public,
            timeout=float(config.get("WECHAT_HTTP_TIMEOUT") or DEFAULT_TIMEOUT_SECONDS),
            forced_refresh_interval=int(config.get("WECHAT_FORCED_REFRESH_INTERVAL", 30)),
            forced_refresh_daily_cap=int(config.get("WECHAT_FORCED_REFRESH_DAILY_CAP", 10)),
            pay_cert_path=config.get("WECHAT_PAY_CERT_PATH") or None,
            pay_key_path=config.get("WECHAT_PAY_KEY_PATH") or None,
        )


class WeChatState:
    """One per app. Clients are built once and reused: each holds a pooled HTTP session."""

    def __init__(
        self,
        settings: WeChatSettings,
        storage: SessionStorage,
        token_lock: TokenLock,
        seen_once: SeenOnce | None = None,
        daily_counter: DailyCounter | None = None,
        image_cache: ImageCache | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.token_lock = token_lock
        self.seen_once = seen_once or MemorySeenOnce()
        self.daily_counter = daily_counter or shared_for(None)[1]
        self.image_cache = image_cache or MemoryImageCache()
        self._clients: dict[str, Any] = {}
        self._guard = threading.Lock()

    def cached(self, name: str, build: Callable[[], T]) -> T:
        with self._guard:
            if name not in self._clients:
                self._clients[name] = build()
            return self._clients[name]  # type: ignore[no-any-return]


def current_state() -> WeChatState:
    try:
        return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("mp_backend.wechat.init_app(app) has not been called for this app") from None
