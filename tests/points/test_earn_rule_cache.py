"""Each process keeps the active earning rules for EARN_RULE_CACHE_SECONDS (every payment and recharge
asks for them): a rule saved through the service applies at once in that process, and one saved by
another process applies within that time, never later."""

from __future__ import annotations

import time

from sqlalchemy import text

from mp_backend.extensions import db
from mp_backend.models_base import utcnow
from tests.points.test_wiring import earn_rule, points_of
from tests.spending.helpers import pay


def _rule_from_another_process(per_yuan: int) -> None:
    """What a rule saved by another worker looks like to this one: a committed row, no call here."""
    db.session.execute(text("UPDATE points_earn_rule SET active = 0 WHERE earned_on = 'spend'"))
    db.session.execute(
        text(
            "INSERT INTO points_earn_rule (earned_on, store_id, points_per_yuan, active, created_at) "
            "VALUES ('spend', NULL, :p, 1, :t)"
        ),  # fmt: skip
        {"p": per_yuan, "t": utcnow()},
    )
    db.session.commit()


def test_a_rule_saved_here_applies_at_once(app, client, admin, payer):
    app.config["EARN_RULE_CACHE_SECONDS"] = 60
    token, _ = payer("cai", principal_fen=10_000)
    pay(client, token, "EC-1", 1_000)  # no rule yet: cached as none
    assert points_of(client, token) == (0, 0)
    earn_rule(admin, "spend", 2)  # through the console: this process forgets its copy
    pay(client, token, "EC-2", 1_000)
    assert points_of(client, token) == (20, 0)
    earn_rule(admin, "spend", 5)  # a replacement, too
    pay(client, token, "EC-3", 1_000)
    assert points_of(client, token) == (70, 0)


def test_a_rule_saved_elsewhere_applies_within_the_cache_time(app, client, payer):
    app.config["EARN_RULE_CACHE_SECONDS"] = 0.5
    token, _ = payer("cen", principal_fen=10_000)
    pay(client, token, "EC-4", 1_000)  # reads and keeps "no rule"
    _rule_from_another_process(3)
    pay(client, token, "EC-5", 1_000)  # within the cache time: this process still has its copy
    assert points_of(client, token) == (0, 0)
    time.sleep(0.6)
    pay(client, token, "EC-6", 1_000)
    assert points_of(client, token) == (30, 0)


def test_without_a_cache_every_payment_reads_the_rules(app, client, payer):
    app.config["EARN_RULE_CACHE_SECONDS"] = 0
    token, _ = payer("cui", principal_fen=10_000)
    pay(client, token, "EC-7", 1_000)
    _rule_from_another_process(1)
    pay(client, token, "EC-8", 1_000)
    assert points_of(client, token) == (10, 0)
