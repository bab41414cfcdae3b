"""Start-up refusals and session settings (DESIGN §6): no built-in SECRET_KEY outside the sandbox, a
``Secure`` session cookie behind https, and a session that lives no longer than a member token."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mp_backend import create_app
from mp_backend.config import DEV_SECRET_KEY, Config
from mp_backend.security import ConfigurationError

PRODUCTION = {"DATABASE_URL": "sqlite://", "PUBLIC_BASE_URL": "https://member.example.com"}
REAL_KEY = "a-long-random-value-from-the-deployment-0123456789"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """set(**values): a clean environment of only these variables (for Config())."""
    for name in ("SECRET_KEY", "DATABASE_URL", "WECHAT_SANDBOX", "PUBLIC_BASE_URL", "MEMBER_TOKEN_MAX_AGE"):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize(
    "secret",
    [None, "", DEV_SECRET_KEY, "x", " " * 40, "x" * 48, "short-but-random-9f2k"],
    ids=["missing", "empty", "dev", "one-char", "spaces", "one-char-repeated", "short"],
)
def test_outside_the_sandbox_the_app_refuses_a_missing_weak_or_default_secret_key(environment, secret):
    # given a production-like environment (own database, so no sandbox) without a real SECRET_KEY
    environment(**PRODUCTION, **({"SECRET_KEY": secret} if secret is not None else {}))
    # when the app is created, then it refuses to start and says which setting to fix
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app(Config())


def test_outside_the_sandbox_a_real_secret_key_starts(environment):
    environment(**PRODUCTION, SECRET_KEY=REAL_KEY)
    app = create_app(Config())
    assert not app.config["WECHAT_SANDBOX"]


def test_the_sandbox_starts_with_the_built_in_key(environment):
    environment()  # a fresh clone's make run
    app = create_app(Config())
    assert app.config["WECHAT_SANDBOX"] and app.config["SECRET_KEY"] == DEV_SECRET_KEY


def test_the_session_cookie_is_secure_behind_https_and_lives_no_longer_than_a_member_token(environment):
    environment(**PRODUCTION, SECRET_KEY=REAL_KEY, MEMBER_TOKEN_MAX_AGE="3600")
    app = create_app(Config())
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.permanent_session_lifetime == timedelta(seconds=3600)


def test_the_session_cookie_is_not_secure_on_plain_http(environment):
    environment()
    app = create_app(Config())
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.permanent_session_lifetime == timedelta(days=7)


def test_an_upper_case_https_origin_still_makes_the_cookie_secure(environment):
    environment(**{**PRODUCTION, "PUBLIC_BASE_URL": "HTTPS://Member.Example.com"}, SECRET_KEY=REAL_KEY)
    assert create_app(Config()).config["SESSION_COOKIE_SECURE"] is True


def test_outside_the_sandbox_missing_wechat_settings_are_named_at_start(environment, caplog):
    # given a production environment without any WeChat value
    environment(**PRODUCTION, SECRET_KEY=REAL_KEY)
    # when the app starts, then the log names what is missing (values, never secrets, are absent)
    with caplog.at_level("WARNING", logger="mp_backend.wechat"):
        create_app(Config())
    assert "WECHAT_MP_APPID" in caplog.text and "WECHAT_PAY_API_KEY" in caplog.text
