"""SQLite: REPLACE cannot rewrite an append-only row

Revision ID: e1f2a3b4c5d6
Revises: 3b966af4b158
Create Date: 2026-11-23 20:00:00

SQLite's REPLACE (and INSERT OR REPLACE) deletes the row it conflicts with without firing DELETE
triggers unless a connection turns on ``recursive_triggers`` (the app does; the sqlite3 shell does not).
These BEFORE INSERT triggers refuse an insert that would replace a ledger or points row, whoever runs
it. The messages are SQLite's own for the unique keys, so a duplicate idempotency key still reads as
one. MariaDB's REPLACE fires the DELETE trigger already: nothing to add there.
"""
from alembic import op


revision = 'e1f2a3b4c5d6'
down_revision = '3b966af4b158'
branch_labels = None
depends_on = None

GUARDS = {
    "ledger_entry": {
        "id": "NEW.id",
        "idempotency_key": "NEW.idempotency_key",
        "closes_entry_id": "NEW.closes_entry_id",
    },
    "points_entry": {"id": "NEW.id", "idempotency_key": "NEW.idempotency_key"},
}


def _names():
    for table, columns in GUARDS.items():
        for column, value in columns.items():
            yield table, column, value, f"{table}_no_replace_{column}"


def upgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, column, value, name in _names():
        op.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
            f"WHEN {value} IS NOT NULL AND EXISTS (SELECT 1 FROM {table} WHERE {column} = {value}) "
            f"BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: {table}.{column}'); END"
        )


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        return
    for _table, _column, _value, name in _names():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
