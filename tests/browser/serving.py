"""The app in sandbox mode served on a local port for the browser tests (threaded: the sandbox's fake
WeChat calls back into the same server)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from bench.notify import free_port  # the first free port in 5300-5399, as the bench's servers use
from mp_backend import create_app
from mp_backend.config import SANDBOX_WECHAT
from mp_backend.demo import load_demo, load_recharge_demo
from mp_backend.extensions import db
from mp_backend.wechat.fake import _QuietHandler
from tests.conftest import _empty_tables, make_config


def _not_ready(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def _bound_server() -> BaseWSGIServer:
    """A server bound to a free port before the app is built (its origin is in the app's config): a
    port probed free can be taken by another test run on the machine before we bind it, so try on."""
    taken: set[int] = set()
    for _ in range(20):
        port = free_port(skip=taken)
        try:
            return make_server("127.0.0.1", port, _not_ready, threaded=True, request_handler=_QuietHandler)
        except OSError:
            taken.add(port)
    raise RuntimeError("no free port for the browser test server")


@contextmanager
def served_demo(database_url: str, extra: Callable[[], Any] | None = None) -> Iterator[tuple[str, Any]]:
    """Empty tables, the demo data (and ``extra()`` in the app context), then the app on a free port:
    yields (origin, app)."""
    server = _bound_server()
    origin = f"http://127.0.0.1:{server.server_port}"
    thread: threading.Thread | None = None
    app = None
    try:
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
        server.app = app
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield origin, app
    finally:
        if thread is not None:
            server.shutdown()
            thread.join(timeout=5)
        server.server_close()
        if app is not None:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
