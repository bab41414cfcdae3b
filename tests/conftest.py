"""Test harness.

Backends: SQLite in a temp file and in-process jobs by default; MariaDB and Redis + RQ when
TEST_DATABASE_URL / TEST_REDIS_URL are set (CI sets both). The schema is built once per session by
the real migrations (so they are tested too); each test starts from empty tables.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import create_engine, inspect, text

from mp_backend import create_app
from mp_backend.config import TestConfig
from mp_backend.extensions import db, jobs

MYSQL = os.environ.get("TEST_DATABASE_URL", "").startswith("mysql")


def _reset_database(url: str) -> None:
    """Drop every table so the migrations build the schema from nothing."""
    engine = create_engine(url)
    with engine.begin() as conn:
        names = inspect(conn).get_table_names()
        if conn.dialect.name == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            for name in names:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
        else:
            for name in names:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    _reset_database(url)
    app = create_app(TestConfig(database_url=url, redis_url=""))
    with app.app_context():
        upgrade()
    return url


def make_config(database_url: str, **overrides: object) -> TestConfig:
    config = TestConfig(database_url=database_url)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture
def config(database_url: str) -> TestConfig:
    return make_config(database_url)


@pytest.fixture
def app(config: TestConfig) -> Iterator[Flask]:
    app = create_app(config)
    with app.app_context():
        _empty_tables()
        if jobs.redis is not None:
            jobs.redis.flushdb()
        yield app
        db.session.remove()
        db.engine.dispose()


def _empty_tables() -> None:
    """Empty every table. Append-only tables refuse DELETE by trigger (the ledger): MariaDB empties them
    with TRUNCATE, which fires no trigger; SQLite drops the triggers around the DELETE."""
    tables = [t for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name != "mysql":
        with append_only_off(), db.engine.begin() as conn:
            for table in tables:
                conn.execute(table.delete())
        return
    with db.engine.begin() as conn:
        guarded = set(
            conn.exec_driver_sql(
                "SELECT event_object_table FROM information_schema.triggers "
                "WHERE trigger_schema = DATABASE() AND event_manipulation = 'DELETE'"
            ).scalars()
        )
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for table in tables:
            if table.name in guarded:
                conn.exec_driver_sql(f"TRUNCATE TABLE `{table.name}`")
            else:
                conn.execute(table.delete())
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


@contextmanager
def append_only_off() -> Iterator[None]:
    """Drop every trigger for the block and create each again afterwards from its own saved definition:
    what someone with DDL rights could do, so tests can show that the ledger checker still catches it."""
    db.session.commit()
    with db.engine.begin() as conn:
        if conn.dialect.name == "mysql":
            names = (
                conn.exec_driver_sql(
                    "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
                )
                .scalars()
                .all()
            )
            saved = [(name, conn.exec_driver_sql(f"SHOW CREATE TRIGGER `{name}`").one()[2]) for name in names]
        else:
            saved = [
                tuple(row) for row in conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            ]
        for name, _sql in saved:
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
    try:
        yield
    finally:
        db.session.commit()
        with db.engine.begin() as conn:
            for _name, sql in saved:
                conn.exec_driver_sql(sql)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


# ----------------------------------------------------------------------------------------------
# Factories


_seq = itertools.count(1)


@pytest.fixture
def org(app: Flask) -> dict:
    """HQ, one region, two stores, and one staff member of each role."""
    from mp_backend.org import service as org_service

    org_service.ensure_merchant("测试商户")
    org_service.ensure_region("east", "华东区")
    org_service.ensure_region("north", "华北区")
    sh01 = org_service.ensure_store("sh01", "上海一店", "east")
    sh02 = org_service.ensure_store("sh02", "上海二店", "east")
    bj01 = org_service.ensure_store("bj01", "北京一店", "north")
    staff = {
        "admin": org_service.create_staff("admin", "hq_admin", "password-1"),
        "east_manager": org_service.create_staff("east", "region_manager", "password-1", region_code="east"),
        "sh01_manager": org_service.create_staff("sh01m", "store_manager", "password-1", store_code="sh01"),
        "sh01_clerk": org_service.create_staff("sh01c", "clerk", "password-1", store_code="sh01"),
    }
    return {
        "stores": {"sh01": sh01.id, "sh02": sh02.id, "bj01": bj01.id},
        "staff": {name: s.id for name, s in staff.items()},
    }


@pytest.fixture
def make_member(app: Flask):  # type: ignore[no-untyped-def]
    """make_member(principal_fen=0, bonus_fen=0) -> member id, funded through the ledger itself."""
    from mp_backend.ledger import service as ledger
    from mp_backend.members import service as members

    def make(principal_fen: int = 0, bonus_fen: int = 0, **fields: object) -> int:
        member = members.create_member(**fields)  # type: ignore[arg-type]
        n = next(_seq)
        if principal_fen:
            ledger.credit(member.id, principal_fen, key=f"seed-p-{n}", operator="test")
        if bonus_fen:
            ledger.credit(member.id, bonus_fen, bucket="bonus", key=f"seed-b-{n}", operator="test")
        return member.id

    return make


def assert_ledger_ok(policies: tuple[str, ...] | None = None) -> None:
    from mp_backend.ledger.check import check_ledger

    problems = check_ledger(policies=policies)
    assert problems == [], "\n".join(map(str, problems))


def count_rows(table: str) -> int:
    return db.session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
