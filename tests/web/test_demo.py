"""The demo of ``make run`` is one person everywhere (DESIGN §5): the real app in sandbox mode, served on
a local port (it calls its own sandbox WeChat over HTTP, as under ``make run``), demo data loaded by
the CLI; demo Alice (200.00 + 20.00 bonus) is Alice in the mini program, in the H5 member centre
after OAuth, and in the official account's balance reply, also after WECHAT_WXA_APPID changes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from mp_backend import create_app
from mp_backend.extensions import db
from mp_backend.wechat.tokens import clear_process_storage
from tests.conftest import _empty_tables
from tests.web.conftest import member_ids

ALICE_AVAILABLE_FEN = 22_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def sandbox(database_url: str, monkeypatch: pytest.MonkeyPatch, **environment: str) -> Iterator[tuple[Flask, str]]:
    """``make run`` in a test: the environment, the config read from it, the app served on its port."""
    from mp_backend.config import TestConfig

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    for name in ("DATABASE_URL", "WECHAT_API_BASE_URL", "WECHAT_PAY_API_BASE_URL", "WECHAT_OAUTH_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WECHAT_SANDBOX", "1")
    monkeypatch.setenv("PUBLIC_BASE_URL", origin)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    clear_process_storage()
    app = create_app(TestConfig(database_url=database_url, redis_url=""))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        with app.app_context():
            yield app, origin
            db.session.remove()
            db.engine.dispose()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        clear_process_storage()


@pytest.fixture
def demo(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    with sandbox(database_url, monkeypatch) as (app, _origin), app.app_context():
        _empty_tables()

    def open_demo(**environment: str):  # type: ignore[no-untyped-def]
        return sandbox(database_url, monkeypatch, **environment)

    return open_demo


def people() -> int:
    count = len(member_ids())
    db.session.rollback()  # hold no transaction (on SQLite, the write lock) while the server works
    return count


def load(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output


def mini_program_balance(origin: str, openid: str) -> int:
    login = requests.post(f"{origin}/api/auth/wxa-login", json={"code": f"sandbox-{openid}"}, timeout=10)
    assert login.status_code == 200, login.text
    return int(login.json()["member"]["balance"]["available_fen"])


def member_centre_balance(origin: str, openid: str) -> int:
    """The H5 member centre's call after OAuth: the sandbox's authorize page, then /api/me by cookie."""
    browser = requests.Session()
    start = browser.get(f"{origin}/wechat/oauth", params={"next": "/api/me"}, allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text
    authorize_url = start.headers["Location"].partition("#")[0]
    granted = browser.get(authorize_url, params={"openid": openid}, allow_redirects=False, timeout=10)
    assert granted.status_code == 302, granted.text
    me = browser.get(granted.headers["Location"], timeout=10)  # the callback, then /api/me
    assert me.status_code == 200, me.text
    return int(me.json()["balance"]["available_fen"])


def balance_reply(app: Flask, origin: str, openid: str) -> str:
    fake = app.extensions["wechat_sandbox"].fake
    reply = fake.mp_post(f"{origin}/wechat/mp", fake.text_message(openid, "余额"))
    assert reply.status == 200, reply.body
    return reply.content or ""


def test_demo_alice_is_one_person_in_every_app(demo):
    with demo() as (app, origin):
        # given a fresh clone's make run
        load(app)
        before = people()
        # then Alice has 220.00 in the mini program, the H5 member centre and the balance reply
        assert mini_program_balance(origin, "demo-alice") == ALICE_AVAILABLE_FEN
        assert member_centre_balance(origin, "demo-alice") == ALICE_AVAILABLE_FEN
        assert "余额：220.00 元" in balance_reply(app, origin, "demo-alice")
        # and none of it created anybody
        assert people() == before


def test_demo_survives_another_appid_and_stays_idempotent(demo):
    with demo() as (app, _origin):
        load(app)
        before = people()
    # when make run starts again with another mini program (and official account) appid
    other = {"WECHAT_WXA_APPID": "wxacceptance00wxa1", "WECHAT_MP_APPID": "wxacceptance000mp1"}
    with demo(**other) as (app, origin):
        load(app)
        load(app)
        # then it starts, and demo Alice is still the one Alice with her 220.00, everywhere
        assert people() == before
        assert mini_program_balance(origin, "demo-alice") == ALICE_AVAILABLE_FEN
        assert member_centre_balance(origin, "demo-alice") == ALICE_AVAILABLE_FEN
        assert "余额：220.00 元" in balance_reply(app, origin, "demo-alice")
        assert people() == before
