"""Signed, expiring bearer tokens (itsdangerous) for members and staff."""

from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import Unauthorized


def _serializer(audience: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"mp-backend/{audience}")


def issue(audience: str, payload: dict[str, Any]) -> str:
    return _serializer(audience).dumps(payload)


def verify(audience: str, token: str, max_age: int) -> dict[str, Any]:
    try:
        payload = _serializer(audience).loads(token, max_age=max_age)
    except SignatureExpired as error:
        raise Unauthorized("登录已过期，请重新登录", code="token_expired") from error
    except BadSignature as error:
        raise Unauthorized("登录凭证无效", code="token_invalid") from error
    if not isinstance(payload, dict):
        raise Unauthorized("登录凭证无效", code="token_invalid")
    return payload
