"""Security and limits that hold for every request (DESIGN §6), applied by create_app().

- ``check_secret_key``: outside the sandbox, no empty or built-in SECRET_KEY (anyone who has read this
  repository could sign a staff token with it);
- ``apply_session_policy``: the H5 session cookie is ``Secure`` behind https and lives no longer than a
  member token;
- ``load_json_body``: the one JSON reader of request bodies, with bounded nesting and no lone
  surrogates (which the database driver cannot encode);
- ``SecretRedactingFilter``: no secret, token, login code or pay key reaches a log line;
- ``BoundedIntConverter``: ids beyond the column's range are 404, never a database error.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

from .config import DEV_SECRET_KEY
from .errors import AppError, ValidationFailed

log = logging.getLogger(__name__)


MIN_SECRET_KEY_LENGTH = 32


class ConfigurationError(RuntimeError):
    """The app refuses to start: the message says which setting to fix."""


def check_secret_key(app: Flask) -> None:
    key = app.config.get("SECRET_KEY") or ""
    if app.config.get("WECHAT_SANDBOX"):
        return
    if not key or key == DEV_SECRET_KEY or len(key.strip()) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 8:
        raise ConfigurationError(
            "SECRET_KEY is empty, too short, too plain or the built-in development value; anyone who can guess "
            f"it can sign staff tokens. Set SECRET_KEY to a random value of at least {MIN_SECRET_KEY_LENGTH} "
            'characters, e.g. `python -c "import secrets; print(secrets.token_urlsafe(48))"`.'
        )


def apply_session_policy(app: Flask) -> None:
    """Derived here, not in Config, so a test or deployment overriding either input keeps them in step."""
    app.config["SESSION_COOKIE_SECURE"] = str(app.config.get("PUBLIC_BASE_URL") or "").lower().startswith("https://")
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=int(app.config["MEMBER_TOKEN_MAX_AGE"]))
    app.session_interface = CookieSessions()


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened without work when there is nothing to open: a request without a
    ``Cookie`` header (every open-API call and WeChat notification) gets the empty session Flask would give
    it, without a signing serializer built and the absent cookies parsed on every request."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)


# -- JSON bodies ------------------------------------------------------------------------------------


class JsonRequired(AppError):
    status, code, message = 415, "json_required", "请以 JSON 格式发送请求（Content-Type: application/json）"


class InvalidJson(ValidationFailed):
    code, message = "invalid_json", "请求内容不是有效的 JSON"


class JsonTooDeep(ValidationFailed):
    code, message = "json_too_deep", "JSON 嵌套层数过多"


class InvalidText(ValidationFailed):
    code, message = "invalid_request", "请求中含有无效字符"


_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json_body(data: bytes, *, max_depth: int) -> Any:
    """Parse a request body; refuse what would fail later (deep nesting, text the database can't store)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("请求内容不是 UTF-8 编码的 JSON") from None
    if not text.strip():
        raise InvalidJson("请求内容为空，请发送 JSON")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeep() from None
    except ValueError:
        raise InvalidJson() from None
    _check_tree(value, max_depth)
    return value


def _check_tree(value: Any, max_depth: int) -> None:
    """Walk the parsed value without recursion: depth, and lone surrogates in keys and strings."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise InvalidText()
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise JsonTooDeep()
            items = node.items() if isinstance(node, dict) else ((None, item) for item in node)
            for key, item in items:
                if key is not None and _SURROGATE.search(key):
                    raise InvalidText()
                stack.append((item, depth + 1))


# -- logs -------------------------------------------------------------------------------------------

# Query or form parameters, JSON members and XML elements whose value is a secret.
SECRET_NAMES = (
    "secret|appsecret|access_token|refresh_token|js_code|code|session_key|sign|paySign|key|api_key|password|token"
)
_QUERY = re.compile(rf"(?i)(?<![\w-])({SECRET_NAMES})=([^&\s'\",;)}}\]>]+)")
_JSON = re.compile(rf"(?i)([\"'])({SECRET_NAMES})\1(\s*:\s*)([\"'])(.*?)(?<!\\)\4")
_XML = re.compile(rf"(?i)<({SECRET_NAMES})>(.*?)</\1>")
REDACTED = "***"


def redact(text: str) -> str:
    text = _QUERY.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _JSON.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{REDACTED}{m[4]}", text)
    return _XML.sub(lambda m: f"<{m.group(1)}>{REDACTED}</{m.group(1)}>", text)


class SecretRedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in) and exception text with secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_secrets_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the formatter to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        record._secrets_redacted = True
        return True


_FILTER = SecretRedactingFilter()
_factory_installed = False


def install_log_redaction() -> None:
    """On the root logger's handlers, and on every record as it is made (so handlers added later, such
    as gunicorn's or pytest's, never see a secret either). wechatpy logs pay requests, signature
    strings and the pay key at DEBUG: it is held at INFO on top of the redaction."""
    global _factory_installed
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if not _factory_installed:
        make_record = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _factory_installed = True
    wechatpy_log = logging.getLogger("wechatpy")
    if wechatpy_log.level == logging.NOTSET or wechatpy_log.level < logging.INFO:
        wechatpy_log.setLevel(logging.INFO)


# -- ids in paths -----------------------------------------------------------------------------------

INT_MAX = 2**31 - 1  # INTEGER primary keys (MariaDB INT, SQLite's are wider)
BIGINT_MAX = 2**63 - 1  # BIGINT (ledger entries)


class IdConverter(IntegerConverter):
    """``<id:member_id>``: a positive id within an INTEGER column, in ASCII digits without leading zeros
    (``\\d`` would take full-width ``１``, and ``/0001`` would be a second address of member 1); anything
    else is a 404."""

    regex = r"[1-9][0-9]*"

    def __init__(self, map: Any, max: int = INT_MAX) -> None:  # noqa: A002 - werkzeug's argument name
        super().__init__(map, min=1, max=max)


class BigIdConverter(IdConverter):
    """``<big_id:entry_id>``: a positive id within a BIGINT column."""

    def __init__(self, map: Any) -> None:  # noqa: A002
        super().__init__(map, max=BIGINT_MAX)


def register_converters(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["big_id"] = BigIdConverter
