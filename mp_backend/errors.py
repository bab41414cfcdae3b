"""One error family with stable codes, rendered as {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorBody(Schema):
    code = fields.String(required=True, metadata={"description": "stable machine-readable code"})
    message = fields.String(required=True, metadata={"description": "for people, in Chinese"})
    details = fields.Dict()


class ErrorSchema(Schema):
    """Every JSON error: {"error": {"code", "message"}}; also flask-smorest's default error schema."""

    error = fields.Nested(ErrorBody, required=True)


class AppError(Exception):
    """A refusal the caller can act on. ``code`` is stable; ``message`` is for people."""

    status = 400
    code = "bad_request"
    message = "请求无效"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        super().__init__(f"{self.code}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class ValidationFailed(AppError):
    status, code, message = 400, "invalid_request", "请求参数有误"


class InvalidAmount(AppError):
    status, code, message = 400, "invalid_amount", "金额必须是大于 0 的整数（单位：分）"


class NotFound(AppError):
    status, code, message = 404, "not_found", "记录不存在"


class MemberNotFound(NotFound):
    code, message = "member_not_found", "会员不存在"


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "请先登录"


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "没有权限执行此操作"


class Conflict(AppError):
    status, code, message = 409, "conflict", "操作与当前状态冲突"


class InsufficientBalance(Conflict):
    code, message = "insufficient_balance", "余额不足"


class MemberFrozen(Conflict):
    code, message = "member_frozen", "会员卡已冻结或挂失，暂不能使用余额"


class IdempotencyConflict(Conflict):
    code, message = "idempotency_conflict", "该请求号已用于另一笔不同的操作"


class Busy(AppError):
    status, code, message = 503, "busy", "系统繁忙，请稍后重试"


class UpstreamError(AppError):
    status, code, message = 502, "wechat_unavailable", "微信服务暂时不可用，请稍后重试"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def _app_error(error: AppError):  # type: ignore[no-untyped-def]
        return jsonify(error.to_dict()), error.status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        # flask-smorest puts marshmallow's messages in error.data["messages"]
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        status = error.code or 500
        if status == 422:
            status = 400
        code = {
            400: "invalid_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }.get(status, "http_error")
        body: dict[str, Any] = {"code": code, "message": _human(status, error)}
        if messages:
            body["details"] = messages
        # Keep what the exception says besides its body (Allow on a 405, Retry-After, ...).
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        return jsonify({"error": body}), status, headers

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):  # type: ignore[no-untyped-def]
        from .extensions import db

        db.session.rollback()
        log.exception("unhandled error")
        return jsonify({"error": {"code": "internal_error", "message": "系统错误，请稍后重试"}}), 500


def _human(status: int, error: HTTPException) -> str:
    return {
        400: "请求参数有误",
        401: "请先登录",
        403: "没有权限执行此操作",
        404: "地址不存在",
        405: "不支持该请求方法",
        413: "请求内容过大",
        415: "请求格式不支持",
    }.get(status, error.description or "请求无效")
