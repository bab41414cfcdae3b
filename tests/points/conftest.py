"""Points tests: the real app with the fake WeChat (reused from tests/web), staff from tests/recharge."""

from __future__ import annotations

import pytest

from mp_backend.extensions import db
from mp_backend.ledger import points
from tests.recharge.conftest import admin, card_types, rule, staff_token  # noqa: F401
from tests.spending.conftest import payer  # noqa: F401
from tests.till.conftest import member, till  # noqa: F401
from tests.web.conftest import app, app_overrides, bearer, client, fake  # noqa: F401

TEMPLATE = "tpl-points-expiry"


def assert_points_ok() -> None:
    db.session.rollback()
    problems = points.check()
    assert problems == [], "\n".join(problems)


@pytest.fixture
def mp_member(app, make_member):  # type: ignore[no-untyped-def]  # noqa: F811
    """mp_member(openid) -> member id, with an official-account openid (so reminders can be sent)."""
    from mp_backend.members import service as members

    def make(openid: str) -> int:
        member_id = make_member()
        login = members.login_with_openid(app.config["WECHAT_MP_APPID"], openid)
        if login.member.id != member_id:  # login created its own member: use that one
            return login.member.id
        return member_id

    return make
