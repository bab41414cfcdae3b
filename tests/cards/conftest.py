"""Member-card tests: the real app with the fake WeChat (tests/web), staff from tests/recharge."""

from __future__ import annotations

import pytest
from flask import Flask

from mp_backend.extensions import db, jobs
from tests.recharge.conftest import admin, staff_token  # noqa: F401
from tests.web.conftest import app, app_overrides, bearer, client, fake, wxa_login  # noqa: F401

CARD_ID = "pFS7Fjg8kV1IdDz01r4SQwMkuCKc"


def drain(app: Flask) -> None:  # noqa: F811
    """Run what was enqueued: on Redis (TEST_REDIS_URL) a real RQ worker in burst mode; in-process
    jobs have already run."""
    if jobs.queue is not None:
        from jobs.worker import make_worker

        db.session.remove()
        make_worker(app).work(burst=True)
    db.session.rollback()


@pytest.fixture
def mp_member(app):  # type: ignore[no-untyped-def]  # noqa: F811
    """mp_member(openid, principal_fen=0, points=0) -> member id: a follower of the official account
    with a balance and points, funded through the ledger."""
    from mp_backend.ledger import points
    from mp_backend.ledger import service as ledger
    from mp_backend.members import service as members

    def make(openid: str, principal_fen: int = 0, points_count: int = 0) -> int:
        member_id = members.login_with_openid(app.config["WECHAT_MP_APPID"], openid).member.id
        if principal_fen:
            ledger.credit(member_id, principal_fen, key=f"seed-{openid}", operator="test")
        if points_count:
            points.award_points(member_id, points_count, key=f"seed-pts-{openid}", source="test")
        drain(app)
        return member_id

    return make
