"""Spending tests: the real app and the fake WeChat (tests/web/conftest.py), driven through HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from mp_backend.extensions import db
from tests.recharge.conftest import admin, card_types, rule, staff_token  # noqa: F401
from tests.spending.helpers import PASSWORD
from tests.web.conftest import app, app_overrides, bearer, client, fake, wxa_login  # noqa: F401


@pytest.fixture
def payer(client: FlaskClient):  # type: ignore[no-untyped-def]  # noqa: F811
    """payer(openid, principal_fen=0, bonus_fen=0, password=PASSWORD) -> (token, member_id): logged in
    through the mini program, funded through the ledger, with a pay password set over HTTP."""
    from mp_backend.ledger import service as ledger

    def make(openid: str, principal_fen: int = 0, bonus_fen: int = 0, password: str | None = PASSWORD) -> Any:
        response = client.post("/api/auth/wxa-login", json={"code": f"sandbox-{openid}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        token, member_id = response.get_json()["token"], response.get_json()["member"]["id"]
        if principal_fen:
            ledger.credit(member_id, principal_fen, key=f"seed-p-{openid}", operator="test")
        if bonus_fen:
            ledger.credit(member_id, bonus_fen, bucket="bonus", key=f"seed-b-{openid}", operator="test")
        db.session.commit()
        if password:
            answer = client.post("/api/me/pay-password", json={"pay_password": password}, headers=bearer(token))
            assert answer.status_code == 201, answer.get_data(as_text=True)
        return token, member_id

    return make
