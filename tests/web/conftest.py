"""Fixtures for the web tests: the real app (``create_app``) talking, through wechatpy, to a fake WeChat
on a local port, and driven only through HTTP with Flask's test client.

Each request the test client sends runs in a fresh context, as under a real server: its own app
context, ``g`` and database session, torn down after the response. (Flask's test client would
otherwise reuse the app context the fixture keeps pushed for the test's own checks, so ``g`` and the
session would leak from one request into the next, which no deployment does.)
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mp_backend import create_app
from mp_backend.extensions import db, jobs
from mp_backend.members.models import Member, MemberOpenid
from mp_backend.wechat.fake import FakeWeChatServer
from mp_backend.wechat.tokens import clear_process_storage
from tests.conftest import _empty_tables, make_config

PUBLIC_BASE_URL = "https://member.example.com"


class RequestPerContextClient(FlaskClient):
    """Flask's test client, each request in its own (empty) context, like one request of a real server."""

    def open(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def,override]
        # The test's own session must not hold a transaction (on SQLite a write lock) while the app works.
        db.session.rollback()
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeWeChatServer]:
    server = FakeWeChatServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_with_unionid(fake: FakeWeChatServer) -> Iterator[FakeWeChatServer]:
    """The fake answers unionid ``sandbox-union-<openid>`` in both apps, as when they share an
    open-platform account (the sandbox of ``make run`` does)."""
    original = fake.settings
    fake.settings = dataclasses.replace(original, with_unionid=True)
    try:
        yield fake
    finally:
        fake.settings = original


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    """Extra config for one test: ``@pytest.mark.parametrize("app_overrides", [{...}])``."""
    return {}


@pytest.fixture
def app(database_url: str, fake: FakeWeChatServer, app_overrides: dict[str, Any]) -> Iterator[Flask]:
    fake.reset()
    clear_process_storage()
    config = make_config(
        database_url,
        WECHAT_SANDBOX=False,
        **{"PUBLIC_BASE_URL": PUBLIC_BASE_URL, "WECHAT_HTTP_TIMEOUT": 2.0, **fake.config(), **app_overrides},
    )
    app = create_app(config)
    app.test_client_class = RequestPerContextClient
    with app.app_context():
        _empty_tables()
        if jobs.redis is not None:
            jobs.redis.flushdb()
        yield app
        db.session.remove()
        db.engine.dispose()
    clear_process_storage()
    fake.reset()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# ----------------------------------------------------------------------------------------------
# Helpers shared by the modules


def error_of(response: Any) -> dict[str, str]:
    """The ``error`` object of a JSON error body, after checking its shape."""
    assert response.is_json, f"{response.status_code} {response.get_data(as_text=True)[:200]!r} is not JSON"
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    return body["error"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def member_ids() -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(select(Member.id).order_by(Member.id)))


def openids_of(member_id: int) -> set[tuple[str, str]]:
    db.session.rollback()
    rows = db.session.execute(
        select(MemberOpenid.appid, MemberOpenid.openid).where(MemberOpenid.member_id == member_id)
    )
    return {(appid, openid) for appid, openid in rows}


def member_row(member_id: int) -> Member:
    db.session.rollback()
    member = db.session.get(Member, member_id)
    assert member is not None
    return member


@pytest.fixture
def wxa_login(client: FlaskClient) -> Callable[[str], dict[str, Any]]:
    """Log in through the mini program as ``openid``; returns the JSON answer."""

    def login(openid: str) -> dict[str, Any]:
        response = client.post("/api/auth/wxa-login", json={"code": f"sandbox-{openid}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()  # type: ignore[no-any-return]

    return login


def now() -> int:
    return int(time.time())
