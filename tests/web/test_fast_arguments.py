"""``Blueprint.arguments(fast=...)``: a hot route's loader for the plainly valid body must never accept
what the route's schema refuses, and must return exactly what the schema would load."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from mp_backend.web.open_schemas import TakeIn, take_in_fast

_app = Flask(__name__)
VALID = {"member": {"card_no": "800610363957"}, "amount_fen": 100, "order_no": "T0000001", "store_code": "sh01"}


def _fast(data: bytes, content_type: str = "application/json") -> dict[str, Any] | None:
    with _app.test_request_context("/", method="POST", data=data, content_type=content_type):
        from flask import request

        return take_in_fast(request)


def _schema(data: bytes) -> dict[str, Any] | None:
    try:
        return TakeIn().load(json.loads(data))  # type: ignore[no-any-return]
    except (ValidationError, ValueError):
        return None


def _agrees(data: bytes, content_type: str = "application/json") -> dict[str, Any] | None:
    fast = _fast(data, content_type)
    if fast is not None:
        assert _schema(data) == fast, data
    return fast


def test_the_tills_usual_charges_take_the_fast_path():
    for member in ({"card_no": "800610363957"}, {"phone": "13800138000"}, {"pay_code": "1" * 18}):
        body = VALID | {"member": member}
        assert _agrees(json.dumps(body).encode()) == body
    assert _agrees(json.dumps(VALID | {"amount_fen": 100_000_000}).encode()) is not None


def test_anything_unusual_is_left_to_the_schema():
    unusual = [
        VALID | {"amount_fen": 0},
        VALID | {"amount_fen": 100_000_001},
        VALID | {"amount_fen": 1.0},
        VALID | {"amount_fen": True},
        VALID | {"amount_fen": "100"},
        VALID | {"order_no": ""},
        VALID | {"order_no": "x" * 65},
        VALID | {"order_no": "订单1"},
        VALID | {"store_code": "sh01\n"},
        VALID | {"member": {}},
        VALID | {"member": {"card_no": "1", "phone": "2"}},
        VALID | {"member": {"pay_code": "12345"}},
        VALID | {"member": {"card_no": "x" * 21}},
        VALID | {"member": {"member_id": 1}},
        VALID | {"extra": 1},
        {k: v for k, v in VALID.items() if k != "store_code"},
    ]
    for body in unusual:
        assert _agrees(json.dumps(body).encode()) is None, body
    assert _agrees(b"\xff\xfe{}") is None
    assert _agrees(b'{"member": {"card_no": "\\ud800"}}') is None
    assert _fast(json.dumps(VALID).encode(), "text/plain") is None
    assert _fast(json.dumps(VALID).encode(), "application/merge-patch+json") is None


_texts = st.one_of(st.text(max_size=70), st.text(alphabet="0123456789abcXYZ-_ ", max_size=70))
_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 200_000_000), st.floats(allow_nan=False), _texts)
_members = st.one_of(
    st.dictionaries(st.sampled_from(["card_no", "phone", "pay_code", "other"]), _values, max_size=3),
    st.dictionaries(st.sampled_from(["pay_code"]), st.text(alphabet="0123456789", min_size=16, max_size=20)),
    _values,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={"member": _members, "amount_fen": _values, "order_no": _values, "store_code": _values, "x": _values},
)


@settings(max_examples=600, deadline=None)
@given(_bodies)
def test_the_fast_path_never_disagrees_with_the_schema(body):
    _agrees(json.dumps(body).encode())
