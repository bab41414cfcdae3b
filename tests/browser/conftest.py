"""What the browser tests share: Debian's chromium driven headless by Playwright for Python, on a
phone-sized viewport, against the app served on a local port in sandbox mode (the fake WeChat mounted
under /sandbox stands in for OAuth and WeChat Pay). Skipped only where /usr/bin/chromium is missing
(.ci/run installs it); ``playwright install`` is never needed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from bench.notify import free_port  # the first free port in 5300-5399 (BENCH_PORTS=FIRST-LAST moves it)
from mp_backend import create_app
from mp_backend.config import SANDBOX_WECHAT
from mp_backend.demo import load_demo, load_recharge_demo
from mp_backend.extensions import db
from mp_backend.wechat.fake import _QuietHandler
from tests.conftest import _empty_tables, make_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[str, Any]]:
    """The app with the demo data, in sandbox mode, served on a local port (threaded: the sandbox's
    fake WeChat calls back into the same server)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    config = make_config(
        database_url,
        WECHAT_SANDBOX=True,
        PUBLIC_BASE_URL=origin,
        WECHAT_API_BASE_URL=f"{origin}/sandbox/wechat/",
        WECHAT_PAY_API_BASE_URL=f"{origin}/sandbox/wechatpay/",
        WECHAT_OAUTH_BASE_URL=f"{origin}/sandbox/wechat/connect/",
        **SANDBOX_WECHAT,
    )
    app = create_app(config)
    with app.app_context():
        _empty_tables()
        for _ in (*load_demo(), *load_recharge_demo()):
            pass
        db.session.commit()
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield origin, app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
