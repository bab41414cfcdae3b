"""The ledger's locking reads are written for READ COMMITTED on MariaDB: the engine setting is part of
its contract (DESIGN.md section 3), so a change to it fails here."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mp_backend.config import Config, engine_options
from mp_backend.extensions import db
from tests.conftest import MYSQL


def test_production_engine_options_ask_for_read_committed_on_mariadb():
    # given the options the app builds for a MariaDB URL, in production and in the tests alike
    url = "mysql+pymysql://user@db.example/shop?charset=utf8mb4"
    # when / then
    assert engine_options(url)["isolation_level"] == "READ COMMITTED"
    config = Config()
    config.SQLALCHEMY_DATABASE_URI = url
    assert engine_options(config.SQLALCHEMY_DATABASE_URI) == engine_options(url)


@pytest.mark.mysql
@pytest.mark.skipif(not MYSQL, reason="needs MariaDB/MySQL: set TEST_DATABASE_URL=mysql+pymysql://...")
def test_the_ledger_connection_runs_at_read_committed(app):
    # given the app's own database connection
    # when the session asks the server
    level = db.session.execute(text("SELECT @@tx_isolation")).scalar_one()
    # then
    assert level == "READ-COMMITTED"


@pytest.mark.parametrize(
    "statement",
    ["UPDATE points_entry SET delta = delta + 1 WHERE id = :id", "DELETE FROM points_entry WHERE id = :id"],
    ids=["update", "delete"],
)
def test_the_points_ledger_is_append_only_too(make_member, statement):
    # given a member with points
    from mp_backend.ledger import points

    member_id = make_member()
    points.award_points(member_id, 100, key="award-1", source="test")
    entry_id = db.session.execute(text("SELECT id FROM points_entry")).scalar_one()
    # when raw SQL tries to change or remove the row
    with pytest.raises(DBAPIError):
        db.session.execute(text(statement), {"id": entry_id})
        db.session.commit()
    db.session.rollback()
    # then the database refused it
    assert db.session.execute(text("SELECT delta FROM points_entry")).scalars().all() == [100]


def test_ledger_check_sees_points_lots_that_disagree_with_the_points_ledger(make_member):
    # given a member with 100 points, and then a lot lowered by hand behind the points ledger's back
    from mp_backend.ledger import points
    from mp_backend.ledger.check import check_ledger

    member_id = make_member()
    points.award_points(member_id, 100, key="award-1", source="test")
    assert check_ledger() == []
    db.session.execute(text("UPDATE points_lot SET remaining = remaining - 50"))
    db.session.commit()
    # when the ledger is checked, then the member and the lot are named
    problems = check_ledger()
    assert [p.invariant for p in problems] == ["points", "points"]
    assert f"member {member_id}" in problems[0].detail and "remaining 50" in problems[1].detail
