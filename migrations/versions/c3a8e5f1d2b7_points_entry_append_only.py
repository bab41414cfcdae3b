"""points ledger is append-only too: triggers refuse UPDATE and DELETE on points_entry

Revision ID: c3a8e5f1d2b7
Revises: 5d1c7a2e9b40
Create Date: 2026-11-23 19:25:00

DESIGN.md section 3: every change to points is one row in an append-only ledger. The same triggers as
``ledger_entry`` (b7e1c2d4a9f0), on MariaDB/MySQL and SQLite.
"""
from alembic import op


revision = 'c3a8e5f1d2b7'
down_revision = '5d1c7a2e9b40'
branch_labels = None
depends_on = None

MESSAGE = "points_entry is append-only: correct a mistake with a new entry"


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    for action in ("UPDATE", "DELETE"):
        name = f"points_entry_no_{action.lower()}"
        if sqlite:
            op.execute(f"CREATE TRIGGER {name} BEFORE {action} ON points_entry BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")
        else:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON points_entry FOR EACH ROW "
                f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{MESSAGE}'"
            )


def downgrade():
    op.execute("DROP TRIGGER IF EXISTS points_entry_no_update")
    op.execute("DROP TRIGGER IF EXISTS points_entry_no_delete")
