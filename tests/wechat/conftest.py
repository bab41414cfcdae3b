"""Fixtures for the WeChat integration: a fake WeChat on a local port and a minimal app pointed at it.

The app here is a bare Flask app with only the config keys ``mp_backend.wechat`` reads, so these tests
do not depend on the database or on blueprints. ``create_app`` users do the same with
``config.__dict__.update(fake.config())`` (see ``test_sandbox.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from mp_backend import wechat
from mp_backend.wechat.fake import FakeSettings, FakeWeChatServer
from mp_backend.wechat.tokens import clear_process_storage

PUBLIC_BASE_URL = "https://member.example.com"


@pytest.fixture
def fake_settings() -> FakeSettings:
    return FakeSettings()


@pytest.fixture
def fake(fake_settings: FakeSettings) -> Iterator[FakeWeChatServer]:
    server = FakeWeChatServer(fake_settings).start()
    try:
        yield server
    finally:
        server.stop()


def make_wechat_app(fake: FakeWeChatServer, **overrides: Any) -> Flask:
    """A bare app that talks to ``fake``: WECHAT_SANDBOX off, no Redis unless overridden."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        WECHAT_SANDBOX=False,
        REDIS_URL=None,
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        WECHAT_HTTP_TIMEOUT=2.0,
        **fake.config(),
    )
    app.config.update(overrides)
    wechat.init_app(app)
    return app


@pytest.fixture
def wechat_app(fake: FakeWeChatServer) -> Iterator[Flask]:
    clear_process_storage()
    app = make_wechat_app(fake)
    with app.app_context():
        yield app
    clear_process_storage()


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    return url


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Run ``app`` on a free local port (threaded) and yield its origin, e.g. for a notify_url."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def run_threads() -> Callable[[int, Callable[[], Any]], list[Any]]:
    """Run ``work`` in ``n`` threads started together; return results (or raised exceptions)."""

    def run(n: int, work: Callable[[], Any]) -> list[Any]:
        barrier = threading.Barrier(n)
        results: list[Any] = [None] * n

        def target(i: int) -> None:
            barrier.wait()
            try:
                results[i] = work()
            except Exception as error:  # collected, asserted by the test
                results[i] = error

        threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return results

    return run
