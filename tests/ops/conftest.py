"""Offline and batch recharges, balance notices and records: the real app and the fake WeChat, through
HTTP. Fixtures of the recharge tests are reused (the console's hq_admin, a rule)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from rq import Queue
from sqlalchemy import func, select

from mp_backend.extensions import db, jobs
from mp_backend.ledger.models import LedgerEntry
from tests.recharge.conftest import admin, card_types, rule, staff_token  # noqa: F401
from tests.web.conftest import app, app_overrides, bearer, client, fake  # noqa: F401

TEMPLATE = "tpl-balance-change"


def login(client: FlaskClient, username: str) -> str:  # noqa: F811
    response = client.post("/admin/api/auth/login", json={"username": username, "password": "password-1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["token"]  # type: ignore[no-any-return]


def call(client: FlaskClient, token: str, method: str, path: str, status: int, **kwargs: Any) -> Any:  # noqa: F811
    response = client.open(path, method=method, headers=bearer(token), **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def run_jobs(app) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """On Redis, a real RQ worker (burst) runs what was enqueued; in process, jobs have already run."""
    if jobs.queue is None:
        return
    from jobs.worker import make_worker

    assert Queue("default", connection=jobs.redis).count >= 0
    db.session.remove()
    make_worker(app).work(burst=True)


def entries(reference_prefix: str) -> int:
    db.session.rollback()
    return int(
        db.session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.reference.like(f"{reference_prefix}%"))
        )
        or 0
    )


@pytest.fixture
def clerk_token(client: FlaskClient, org: dict) -> str:  # noqa: F811
    return login(client, "sh01c")
