"""Marshmallow schemas shared by the blueprints: they validate requests and document /openapi.json."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Request, current_app, request
from flask_smorest import Blueprint as _SmorestBlueprint
from marshmallow import Schema, fields, validate
from webargs.flaskparser import FlaskParser, is_json_request

from ..errors import ErrorSchema, ValidationFailed
from ..security import INT_MAX, JsonRequired, load_json_body

Error = ErrorSchema


class _Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400  # what register_error_handlers answers, so the document agrees

    def load_json(self, req, schema):  # type: ignore[no-untyped-def]
        # webargs reads a body sent as text/plain (or with no Content-Type) as "no body", so the caller
        # would be told a required field is missing: say what is actually wrong instead.
        if not is_json_request(req):
            raise JsonRequired()
        return self._raw_load_json(req)

    def _raw_load_json(self, req) -> Any:  # type: ignore[no-untyped-def]
        # The body is bounded by MAX_CONTENT_LENGTH before it is read (413); then nesting and text.
        return load_json_body(req.get_data(cache=True), max_depth=current_app.config.get("JSON_MAX_DEPTH", 32))


class Blueprint(_SmorestBlueprint):
    ARGUMENTS_PARSER = _Parser()

    def arguments(
        self, schema: Any, *args: Any, fast: Callable[[Request], dict[str, Any] | None] | None = None, **kwargs: Any
    ) -> Any:
        """flask-smorest's, plus ``fast``: for the hot routes, a loader that returns the body the schema
        would load for the usual, plainly valid request, and None for anything else, which the schema
        then loads (or refuses) as always. It must accept nothing the schema refuses and return exactly
        what the schema would (``tests/web/test_fast_arguments.py`` compares them on many bodies)."""
        # One instance per route, built here: given a class, webargs builds the schema (and its nested
        # ones) again on every request. A marshmallow schema keeps no state between loads.
        decorator = super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)
        if fast is None:
            return decorator

        def with_fast_path(func: Callable[..., Any]) -> Callable[..., Any]:
            parsed = decorator(func)  # webargs' parsing, and the route's documentation

            @functools.wraps(parsed)
            def wrapper(*f_args: Any, **f_kwargs: Any) -> Any:
                value = fast(request)
                if value is None:
                    return parsed(*f_args, **f_kwargs)
                return func(*f_args, value, **f_kwargs)

            return wrapper

        return with_fast_path


class BalanceSchema(Schema):
    principal_fen = fields.Integer(required=True)
    bonus_fen = fields.Integer(required=True)
    held_fen = fields.Integer(required=True)
    available_fen = fields.Integer(required=True)


class CardSchema(Schema):
    card_no = fields.String()
    status = fields.String()
    status_label = fields.String()
    level = fields.String()
    discount_percent = fields.Integer()
    free_shipping = fields.Boolean()
    points_multiplier_percent = fields.Integer()
    points_validity_years = fields.Integer()


class LevelSchema(Schema):
    name = fields.String()
    code = fields.String()
    rank = fields.Integer()


class MemberSchema(Schema):
    id = fields.Integer()
    card_no = fields.String()
    name = fields.String()
    phone = fields.String(allow_none=True)
    status = fields.String()
    subscribed = fields.Boolean()
    card = fields.Nested(CardSchema)
    level = fields.Nested(LevelSchema)
    balance = fields.Nested(BalanceSchema)
    points = fields.Integer(metadata={"description": "usable points"})
    points_pending = fields.Integer(metadata={"description": "points earned by purchases, not usable yet"})


class WxaLoginIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))


class WxaLoginOut(Schema):
    token = fields.String(required=True)
    member = fields.Nested(MemberSchema, required=True)
    created = fields.Boolean()


class PhoneBindIn(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))


class StaffLoginIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256))


class TokenOut(Schema):
    token = fields.String(required=True)


class StaffSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    role = fields.String()
    store_id = fields.Integer(allow_none=True)
    region_id = fields.Integer(allow_none=True)
    active = fields.Boolean()
    store_code = fields.String(allow_none=True)
    region = fields.Dict(allow_none=True, metadata={"description": "{id, code, name} or null"})
    all_stores = fields.Boolean(metadata={"description": "HQ: every store"})
    stores = fields.List(fields.Dict(), metadata={"description": "[{id, code, name}] the stores in scope"})
    permissions = fields.List(fields.String())
    created_at = fields.String()


def store_id_field() -> fields.Integer:
    """A store's id in a body: optional, and within the column's range (else 400, not a database error)."""
    return fields.Integer(allow_none=True, validate=validate.Range(min=1, max=INT_MAX))


class MemberStatusIn(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["active", "frozen", "lost"]))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))
    store_id = store_id_field()


AMOUNT_MAX_FEN = 100_000_000  # what one request may move: 1,000,000.00 yuan


class StrictAmount(fields.Integer):
    """An integer number of fen; refuses 1.5, "100" and true instead of coercing them."""

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(strict=True, validate=validate.Range(min=1, max=AMOUNT_MAX_FEN), **kwargs)

    def _validated(self, value):  # type: ignore[no-untyped-def]
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class Reason(fields.String):
    """Why staff did it (audited): 1-255 characters, not only spaces."""

    def __init__(self, blank_message: str, **kwargs):  # type: ignore[no-untyped-def]
        # The pattern documents "not only spaces" in /openapi.json; the check itself is _validate's.
        metadata = {"pattern": r"\S", **kwargs.pop("metadata", {})}
        super().__init__(required=True, validate=validate.Length(min=1, max=255), metadata=metadata, **kwargs)
        self.blank_message = blank_message

    def _validate(self, value):  # type: ignore[no-untyped-def]
        super()._validate(value)
        if not value.strip():
            raise ValidationFailed(self.blank_message, code="reason_required")


class WithdrawalIn(Schema):
    amount_fen = StrictAmount(required=True)
    reason = Reason("请填写提现（退还本金）原因")
    request_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    store_id = store_id_field()


class ReversalIn(Schema):
    reason = Reason("请填写冲正原因")
    request_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    store_id = store_id_field()


class PostingSchema(Schema):
    entry_id = fields.Integer()
    member_id = fields.Integer()
    kind = fields.String()
    amount_fen = fields.Integer()
    principal_delta_fen = fields.Integer()
    bonus_delta_fen = fields.Integer()
    held_delta_fen = fields.Integer()
    balance = fields.Nested(BalanceSchema)
    replayed = fields.Boolean()


def posting_dict(posting) -> dict:  # type: ignore[no-untyped-def]
    return {
        "entry_id": posting.entry_id,
        "member_id": posting.member_id,
        "kind": posting.kind,
        "amount_fen": posting.amount_fen,
        "principal_delta_fen": posting.principal_delta_fen,
        "bonus_delta_fen": posting.bonus_delta_fen,
        "held_delta_fen": posting.held_delta_fen,
        "balance": posting.balance.as_dict(),
        "replayed": posting.replayed,
    }
