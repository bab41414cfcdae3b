"""Configuration from the environment only.

Every value has an embedded default so that ``make run`` works on a fresh clone (SQLite, jobs in
process, WeChat sandbox); a value set in the environment always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"

# Demo credentials for the sandbox only. They are not secrets: the sandbox's fake WeChat knows them,
# and real deployments set WECHAT_SANDBOX=0 with real values from their own environment.
SANDBOX_WECHAT = {
    "WECHAT_MP_APPID": "wxsandboxmp0000001",
    "WECHAT_MP_SECRET": "sandbox-mp-secret",
    "WECHAT_MP_TOKEN": "sandboxtoken",
    "WECHAT_MP_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "WECHAT_WXA_APPID": "wxsandboxwxa000001",
    "WECHAT_WXA_SECRET": "sandbox-wxa-secret",
    "WECHAT_PAY_MCH_ID": "1900000109",
    "WECHAT_PAY_API_KEY": "sandboxpaykey0000000000000000000",
}


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DEV_SECRET_KEY = "dev-only-secret-change-me"  # sandbox only: create_app refuses it anywhere else
MAX_BODY_BYTES = 1024 * 1024  # JSON and WeChat XML bodies; a future upload endpoint may allow more


def default_sqlite_url() -> str:
    return f"sqlite:///{INSTANCE / 'mp_backend.sqlite3'}"


class Config:
    """Read once when the app is created. Tests subclass it; nothing else writes it."""

    def __init__(self) -> None:
        env = os.environ
        self.SECRET_KEY = env.get("SECRET_KEY") or DEV_SECRET_KEY
        self.SQLALCHEMY_DATABASE_URI = env.get("DATABASE_URL") or default_sqlite_url()
        self.REDIS_URL = env.get("REDIS_URL") or None
        self.PUBLIC_BASE_URL = (env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
        # The sandbox is the embedded default; a deployment with its own database must ask for it,
        # so a production host that forgets WECHAT_SANDBOX=0 never accepts sandbox logins.
        self.WECHAT_SANDBOX = _env_bool("WECHAT_SANDBOX", not env.get("DATABASE_URL"))
        for name, demo in SANDBOX_WECHAT.items():
            setattr(self, name, env.get(name) or (demo if self.WECHAT_SANDBOX else ""))
        self.WECHAT_API_BASE_URL = env.get("WECHAT_API_BASE_URL") or (
            f"{self.PUBLIC_BASE_URL}/sandbox/wechat/" if self.WECHAT_SANDBOX else "https://api.weixin.qq.com/"
        )
        self.WECHAT_PAY_API_BASE_URL = env.get("WECHAT_PAY_API_BASE_URL") or (
            f"{self.PUBLIC_BASE_URL}/sandbox/wechatpay/" if self.WECHAT_SANDBOX else "https://api.mch.weixin.qq.com/"
        )
        self.WECHAT_OAUTH_BASE_URL = env.get("WECHAT_OAUTH_BASE_URL") or (
            f"{self.PUBLIC_BASE_URL}/sandbox/wechat/connect/"
            if self.WECHAT_SANDBOX
            else "https://open.weixin.qq.com/connect/"
        )
        # The merchant's WeChat Pay API client certificate (PEM), needed by refunds in production.
        self.WECHAT_PAY_CERT_PATH = env.get("WECHAT_PAY_CERT_PATH") or None
        self.WECHAT_PAY_KEY_PATH = env.get("WECHAT_PAY_KEY_PATH") or None
        # The mini-program page a recharge rule's mini-program code opens (with ?scene=...): a page of the
        # published mini program, no leading "/" and no query.
        self.WECHAT_WXA_RECHARGE_PAGE = env.get("WECHAT_WXA_RECHARGE_PAGE") or "pages/recharge/index"
        # A recharge refund after bonus was spent: deduct_spent_bonus (cash = principal - spent bonus) | refuse
        self.RECHARGE_REFUND_BONUS_POLICY = env.get("RECHARGE_REFUND_BONUS_POLICY") or "deduct_spent_bonus"
        # How a debit splits across principal and bonus: proportional | principal_first | bonus_first
        self.SPENDING_POLICY = env.get("SPENDING_POLICY") or "proportional"
        self.MEMBER_TOKEN_MAX_AGE = _env_int("MEMBER_TOKEN_MAX_AGE", 7 * 24 * 3600)
        self.STAFF_TOKEN_MAX_AGE = _env_int("STAFF_TOKEN_MAX_AGE", 12 * 3600)
        self.JSON_AS_ASCII = False
        # Werkzeug refuses a body whose declared length is larger (413) before reading it.
        self.MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", MAX_BODY_BYTES)
        self.JSON_MAX_DEPTH = 32
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_HTTPONLY = True
        # SESSION_COOKIE_SECURE and PERMANENT_SESSION_LIFETIME follow PUBLIC_BASE_URL and
        # MEMBER_TOKEN_MAX_AGE: create_app derives them (see security.py), so an override cannot split them.
        # WeChat allows 20 forced access-token refreshes per app and day; keep most of them for people.
        self.WECHAT_FORCED_REFRESH_DAILY_CAP = _env_int("WECHAT_FORCED_REFRESH_DAILY_CAP", 10)
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(self.SQLALCHEMY_DATABASE_URI)
        # Console exports (README "Console API"): where the .xlsx files go, and how many rows one may have.
        self.EXPORT_DIR = env.get("EXPORT_DIR") or str(INSTANCE / "exports")
        self.EXPORT_MAX_ROWS = _env_int("EXPORT_MAX_ROWS", 1_000_000)
        self.EXPORT_MAX_ROWS_CLERK = _env_int("EXPORT_MAX_ROWS_CLERK", 100_000)
        # The report job folds past a gap in the ledger's ids once the row after it is this old.
        self.REPORTS_GAP_GRACE_SECONDS = _env_int("REPORTS_GAP_GRACE_SECONDS", 60)
        # flask-smorest / OpenAPI
        self.API_TITLE = "Member stored-value backend"
        self.API_VERSION = "1"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.TESTING = False


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # busy_timeout lets writers queue instead of failing at once; BEGIN IMMEDIATE is set in extensions
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # READ COMMITTED: every locking read sees the latest committed row, and InnoDB takes no gap locks
    # on the ledger's unique keys, so fewer deadlocks under concurrent debits of one wallet.
    # No pre-ping and no pool-level ROLLBACK on return: each costs a round trip per transaction (a third
    # of a debit's), and the session already ends every transaction itself. Connections are recycled
    # well inside MariaDB's wait_timeout instead.
    return {"isolation_level": "READ COMMITTED", "pool_recycle": 1800, "pool_reset_on_return": None}


class TestConfig(Config):
    """Tests: TEST_DATABASE_URL / TEST_REDIS_URL choose the real backends, else SQLite + in-process."""

    def __init__(self, database_url: str | None = None, redis_url: str | None = None) -> None:
        super().__init__()
        self.TESTING = True
        self.SECRET_KEY = "test-secret-not-for-production-0123456789abcdef"
        self.SQLALCHEMY_DATABASE_URI = database_url or os.environ.get("TEST_DATABASE_URL") or "sqlite://"
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(self.SQLALCHEMY_DATABASE_URI)
        self.REDIS_URL = redis_url if redis_url is not None else (os.environ.get("TEST_REDIS_URL") or None)
        self.SPENDING_POLICY = "proportional"
        self.PASSWORD_HASH_CHEAP = True
