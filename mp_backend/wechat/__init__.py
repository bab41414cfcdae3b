"""WeChat integration: wechatpy clients, server-URL signatures, token storage and the sandbox fake.

Everything that talks to WeChat or reads what WeChat sends goes through this package, so no other
code builds XML or signs anything. It never moves money and imports no models, ledger or blueprints:
it answers questions (who is this code's openid, is this message from WeChat) and sends requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask

from .clients import (
    get_phone_number,
    jscode2session,
    mp_client,
    oauth_client,
    pay_client,
    translate_errors,
    wxa_client,
)
from .shared import image_cache_for, shared_for
from .state import EXTENSION_KEY, WeChatSettings, WeChatState, current_state
from .tokens import storage_for

if TYPE_CHECKING:
    from .fake import FakeSettings, FakeWeChat

__all__ = [
    "SANDBOX_PREFIX",
    "SandboxMount",
    "WeChatSettings",
    "current_state",
    "get_phone_number",
    "init_app",
    "jscode2session",
    "mp_client",
    "oauth_client",
    "pay_client",
    "translate_errors",
    "wxa_client",
]

log = logging.getLogger(__name__)

SANDBOX_PREFIX = "/sandbox"
SANDBOX_EXTENSION_KEY = "wechat_sandbox"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


REQUIRED_OUTSIDE_SANDBOX = (
    "WECHAT_MP_APPID",
    "WECHAT_MP_SECRET",
    "WECHAT_WXA_APPID",
    "WECHAT_WXA_SECRET",
    "WECHAT_PAY_MCH_ID",
    "WECHAT_PAY_API_KEY",
)


def init_app(app: Flask) -> None:
    """Read the WeChat settings, choose the token storage, and mount the sandbox fake if asked to.

    Token storage: wechatpy's ``RedisStorage`` (prefix ``wechatpy``) on ``REDIS_URL`` when set, so
    every process and host shares one token per app; otherwise one in-memory storage for the process.
    """
    settings = WeChatSettings.from_config(app.config)
    storage, token_lock = storage_for(app.config.get("REDIS_URL"))
    seen_once, daily_counter = shared_for(app.config.get("REDIS_URL"))
    image_cache = image_cache_for(app.config.get("REDIS_URL"))
    app.extensions[EXTENSION_KEY] = WeChatState(settings, storage, token_lock, seen_once, daily_counter, image_cache)
    if settings.sandbox:
        from .fake import FakeSettings

        # One person across both apps: the sandbox answers the same unionid in each (DESIGN §5).
        mount = SandboxMount(app.wsgi_app, FakeSettings.from_config(app.config, with_unionid=True))
        app.wsgi_app = mount  # type: ignore[method-assign]
        app.extensions[SANDBOX_EXTENSION_KEY] = mount
        log.log(
            logging.INFO if app.testing else logging.WARNING,
            "WECHAT_SANDBOX is on: a fake WeChat answers under %s/wechat/ and %s/wechatpay/ and accepts "
            "login codes 'sandbox-<openid>'. Never serve real members like this (set WECHAT_SANDBOX=0).",
            SANDBOX_PREFIX,
            SANDBOX_PREFIX,
        )
    elif missing := [name for name in REQUIRED_OUTSIDE_SANDBOX if not app.config.get(name)]:
        # Not a refusal to start: a console-only deployment may run without WeChat. But say so at once,
        # rather than at a member's first login with an empty appid.
        log.warning(
            "WeChat is not configured (%s not set): logins, payments and messages will fail", ", ".join(missing)
        )


class SandboxMount:
    """WSGI middleware: ``/sandbox/wechat/...`` and ``/sandbox/wechatpay/...`` go to the fake WeChat,
    everything else to the app.

    The app then calls its own dev server (threaded) for WeChat, through wechatpy, exactly as it would
    call WeChat. The fake is built on the first request that needs it, so an app that never uses the
    sandbox (tests, CLI commands) pays nothing for it.
    """

    def __init__(self, app: WSGIApp, settings: FakeSettings) -> None:
        self._app = app
        self._settings = settings
        self._fake: FakeWeChat | None = None
        self._guard = threading.Lock()

    @property
    def fake(self) -> FakeWeChat:
        with self._guard:
            if self._fake is None:
                from .fake import FakeWeChat

                self._fake = FakeWeChat(self._settings)
            return self._fake

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith((f"{SANDBOX_PREFIX}/wechat/", f"{SANDBOX_PREFIX}/wechatpay/")):
            inner = dict(environ)
            inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + SANDBOX_PREFIX
            inner["PATH_INFO"] = path[len(SANDBOX_PREFIX) :]
            return self.fake.app(inner, start_response)
        return self._app(environ, start_response)
