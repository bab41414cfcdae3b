"""Helpers of the spending tests: members' and the merchant's calls through HTTP."""

from __future__ import annotations

import itertools
from typing import Any

from flask.testing import FlaskClient

from tests.web.conftest import bearer, error_of

__all__ = ["balance", "bearer", "error_of", "pay", "PASSWORD"]

PASSWORD = "802413"
_requests = itertools.count(1)


def pay(
    client: FlaskClient,
    token: str,
    order_no: str,
    amount_fen: int,
    *,
    password: str = PASSWORD,
    request_id: str | None = None,
    status: int = 201,
) -> Any:
    body = {
        "order_no": order_no,
        "amount_fen": amount_fen,
        "pay_password": password,
        "request_id": request_id or f"req-{next(_requests)}",
    }
    response = client.post("/api/payments", json=body, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json() if status < 400 else error_of(response)


def balance(client: FlaskClient, token: str) -> dict[str, int]:
    response = client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200
    return response.get_json()["balance"]  # type: ignore[no-any-return]
