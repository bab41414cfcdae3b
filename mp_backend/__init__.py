"""The member stored-value backend: create_app() builds the Flask application."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from flask import Flask

from . import security
from .config import INSTANCE, ROOT, Config
from .errors import register_error_handlers
from .extensions import api, db, jobs, migrate

# Blueprint modules under mp_backend/web, each exposing ``blp`` (a flask-smorest Blueprint) or ``bp``.
BLUEPRINTS = ("pages", "member", "admin", "open", "wechat_mp", "wechat_pay")
MODEL_MODULES = (
    "org.models",
    "members.models",
    "ledger.models",
    "ledger.points",
    "members.cards",
    "members.wechat_card_models",
    "members.levels",
    "loyalty.models",
    "recharge.models",
    "recharge.ops_models",
    "notices.models",
    "clients.models",
    "spending.paycode",
    "spending.till",
    "spending.models",
    "org.sessions",
    "reports.models",
)


def create_app(config: Any = None) -> Flask:
    config = config or Config()
    app = Flask(__name__, instance_path=str(INSTANCE), static_folder=str(ROOT / "static"), static_url_path="/static")
    app.config.from_object(config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    security.install_log_redaction()
    security.check_secret_key(app)
    security.apply_session_policy(app)
    security.register_converters(app)

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        INSTANCE.mkdir(parents=True, exist_ok=True)

    for module in MODEL_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    jobs.init_app(app)
    api.init_app(app, spec_kwargs={"components": {"securitySchemes": SECURITY_SCHEMES}})

    from . import wechat

    wechat.init_app(app)
    for name in BLUEPRINTS:
        try:
            module = importlib.import_module(f"{__name__}.web.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.web.{name}":
                raise
            continue
        if hasattr(module, "blp"):
            api.register_blueprint(module.blp)
        if hasattr(module, "bp"):
            app.register_blueprint(module.bp)
    register_error_handlers(app)

    from .cli import register_commands

    register_commands(app)
    return app


SECURITY_SCHEMES = {
    "memberToken": {"type": "http", "scheme": "bearer", "description": "Member token from /api/auth/wxa-login"},
    "staffToken": {"type": "http", "scheme": "bearer", "description": "Staff token from /admin/api/auth/login"},
    "openApiSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Signature",
        "description": (
            "HMAC-SHA256 request signature of the till / shop system (lowercase hex), sent with the headers "
            "X-Client-Id, X-Timestamp (unix seconds, within 300 s) and X-Nonce (16-64 characters, single use); "
            "mutating calls also send Idempotency-Key: see the README, section “Open API for the till and shop”"
        ),
    },
}
