"""Open-API tests: the real app, driven through HTTP with requests signed as a till signs them.

Most tests sign with ``clients.service.signature``; ``test_readme_example`` signs with a client written
from the README instead, so the two cannot agree on a mistake."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from mp_backend.clients import service as clients
from mp_backend.extensions import db
from tests.web.conftest import app, app_overrides, bearer, client, error_of, fake, wxa_login  # noqa: F401

_keys = itertools.count(1)


@dataclass
class Till:
    """A till: its credentials and a test client; each call signed, each mutating call with a new key."""

    http: FlaskClient
    client_id: str
    secret: str

    def headers(
        self, method: str, path: str, body: bytes, *, timestamp: int | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(12)
        return {
            "X-Client-Id": self.client_id,
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": clients.signature(self.secret, method, path, ts, nonce, body),
        }

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        sent = self.headers(method, path, data)
        if method != "GET":
            sent["Idempotency-Key"] = key or f"k-{next(_keys)}"
        sent.update(headers or {})
        response = self.http.open(path, method=method, data=data, headers=sent, content_type="application/json")
        if status is not None:
            assert response.status_code == status, response.get_data(as_text=True)
        return response

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call("POST", path, body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def charge(self, member: dict[str, str], amount_fen: int, order_no: str, store_code: str = "sh01", **kwargs: Any):  # type: ignore[no-untyped-def]
        body = {"member": member, "amount_fen": amount_fen, "order_no": order_no, "store_code": store_code}
        return self.post("/open/api/v1/charges", body, **kwargs)

    def hold(self, member: dict[str, str], amount_fen: int, order_no: str, store_code: str = "sh01", **kwargs: Any):  # type: ignore[no-untyped-def]
        body = {"member": member, "amount_fen": amount_fen, "order_no": order_no, "store_code": store_code}
        return self.post("/open/api/v1/holds", body, **kwargs)


def new_till(http: FlaskClient, name: str = "收银台", store_code: str | None = None) -> Till:
    created = clients.create_client(name, store_code)
    db.session.commit()
    return Till(http, created.client.client_id, created.secret)


@pytest.fixture
def till(client: FlaskClient, org: dict) -> Till:  # noqa: F811
    return new_till(client)


@pytest.fixture
def sh01_till(client: FlaskClient, org: dict) -> Till:  # noqa: F811
    return new_till(client, "上海一店收银", "sh01")


@pytest.fixture
def member(make_member) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A member with 300.00 principal and 100.00 bonus, a phone and a card number."""
    from mp_backend.members.models import Member

    member_id = make_member(30_000, 10_000, name="王小明", phone="13800138000")
    card_no = db.session.get(Member, member_id).card_no
    db.session.commit()
    return {"id": member_id, "card_no": card_no, "phone": "13800138000"}


def balance_of(member_id: int) -> tuple[int, int, int]:
    from mp_backend.ledger import service as ledger

    db.session.rollback()
    b = ledger.get_balance(member_id)
    db.session.rollback()
    return (b.principal_fen, b.bonus_fen, b.held_fen)
