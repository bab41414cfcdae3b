"""The schema the migrations build is the schema the models describe, on the configured database.

conftest builds the test database with ``flask db upgrade`` (never ``create_all``), so here we compare
that database with the models' metadata the way ``flask db migrate`` would: an empty diff means no
migration is missing. ``compare_type`` and ``compare_server_default`` are on; neither SQLite nor
MariaDB reports any spurious difference for this schema (BigId's INTEGER-on-SQLite variant and the
exact-collation VARCHAR variant on MariaDB compare equal), so nothing is filtered out.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import downgrade, upgrade
from sqlalchemy import BigInteger, Column, MetaData, inspect

from mp_backend.extensions import db
from tests.conftest import _reset_database


def schema_diff(metadata: MetaData) -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True, "render_as_batch": True}
        )
        return compare_metadata(context, metadata)


def test_migrated_schema_matches_the_models(app):
    # given the database built by the migrations (conftest)
    # when it is compared with the models
    diff = schema_diff(db.metadata)
    # then there is nothing a new migration would have to do
    assert diff == []


def test_the_comparison_sees_a_missing_column(app):
    # given models with one column the migrations do not create
    metadata = MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.sorted_tables:
        table.to_metadata(metadata)
    metadata.tables["wallet"].append_column(Column("frozen_fen", BigInteger, nullable=True))
    # when the database is compared with them
    diff = schema_diff(metadata)
    # then the missing column is reported (so an empty diff above means something)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "wallet", "frozen_fen")]


def test_one_head_and_the_database_is_at_it(app):
    # given the migration scripts
    script = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())
    # when the heads and the database's revision are read
    heads = script.get_heads()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    # then there is a single line of migrations and the test database is at its head
    assert len(heads) == 1
    assert current == tuple(heads)


def test_downgrade_to_nothing_and_upgrade_again(app):
    # given the migrated database (emptied by the app fixture)
    db.session.remove()
    tables = set(inspect(db.engine).get_table_names())
    assert {"ledger_entry", "wallet", "member", "staff", "audit_log"} <= tables
    try:
        # when every migration is undone
        downgrade(revision="base")
        # then only alembic's own table is left
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        # and when they are applied again, the schema is whole and matches the models
        upgrade()
        assert set(inspect(db.engine).get_table_names()) == tables
        assert schema_diff(db.metadata) == []
    finally:
        # Whatever happened, leave the schema built from nothing for the tests that follow.
        db.engine.dispose()
        _reset_database(db.engine.url.render_as_string(hide_password=False))
        upgrade()
