"""The app in sandbox mode served on a local port for the browser tests (threaded: the sandbox's fake
WeChat calls back into the same server)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server

from bench.notify import free_port  # the first free port in 5300-5399, as the bench's servers use
from mp_backend import create_app
from mp_backend.config import SANDBOX_WECHAT
from mp_backend.demo import load_demo, load_recharge_demo
from mp_backend.extensions import db
from mp_backend.wechat.fake import _QuietHandler
from tests.conftest import _empty_tables, make_config


@contextmanager
def served_demo(database_url: str, extra: Callable[[], Any] | None = None) -> Iterator[tuple[str, Any]]:
    """Empty tables, the demo data (and ``extra()`` in the app context), then the app on a free port:
    yields (origin, app)."""
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
        if extra is not None:
            extra()
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
