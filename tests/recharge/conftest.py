"""Recharge tests: the real app talking to the fake WeChat on a local port (tests/web/conftest.py),
driven through HTTP. Helpers set up the merchant's rules through the console API."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from mp_backend.extensions import db
from tests.web.conftest import app, app_overrides, bearer, client, fake, wxa_login  # noqa: F401


@pytest.fixture
def staff_token(client: FlaskClient, org: dict) -> str:  # noqa: F811
    response = client.post("/admin/api/auth/login", json={"username": "admin", "password": "password-1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["token"]  # type: ignore[no-any-return]


@pytest.fixture
def admin(client: FlaskClient, staff_token: str):  # type: ignore[no-untyped-def]  # noqa: F811
    """admin(method, path, json=None, status=200) -> JSON body, as the hq_admin."""

    def call(method: str, path: str, json: Any = None, status: int = 200, **kwargs: Any) -> Any:
        response = client.open(path, method=method, json=json, headers=bearer(staff_token), **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json() if response.is_json else response

    return call


@pytest.fixture
def card_types(app) -> dict[str, int]:  # type: ignore[no-untyped-def]  # noqa: F811
    from mp_backend.members.cards import ensure_card_type

    silver = ensure_card_type("silver", "银卡", rank=1, discount_percent=98)
    gold = ensure_card_type("gold", "金卡", rank=2, discount_percent=95)
    ids = {"silver": silver.id, "gold": gold.id}
    db.session.commit()
    return ids


@pytest.fixture
def rule(admin) -> dict:  # type: ignore[no-untyped-def]
    """100 yuan, 10 yuan bonus and 100 points."""
    return admin(  # type: ignore[no-any-return]
        "POST", "/admin/api/rules", {"name": "充100送10", "amount_fen": 10_000, "bonus_fen": 1_000, "points": 100}, 201
    )
