"""Helpers of the recharge tests: members' calls through HTTP."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.recharge.models import RechargeOrder
from tests.web.conftest import bearer, error_of

__all__ = ["bearer", "error_of", "me", "member_login", "order_row", "start_recharge"]


def member_login(client: FlaskClient, openid: str) -> tuple[str, int]:
    response = client.post("/api/auth/wxa-login", json={"code": f"sandbox-{openid}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    return body["token"], body["member"]["id"]


def start_recharge(client: FlaskClient, token: str, status: int = 201, **body: Any) -> Any:
    response = client.post("/api/recharges", json=body, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def me(client: FlaskClient, token: str) -> dict[str, Any]:
    response = client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200
    return response.get_json()  # type: ignore[no-any-return]


def order_row(out_trade_no: str) -> RechargeOrder:
    """The order as stored, read afresh (the test's own session ends its snapshot first)."""
    db.session.rollback()
    return db.session.scalars(select(RechargeOrder).where(RechargeOrder.out_trade_no == out_trade_no)).one()
