"""a hold may name its buckets; open-API clients record when they were deactivated

Revision ID: 9f3c1d7e5a20
Revises: 483d37308e5b
Create Date: 2026-11-23 21:30:00

- ``ledger_entry.split_principal_fen``: a hold whose caller named its buckets (a recharge refund takes
  back exactly the principal and bonus the recharge gave) records the principal it named; NULL for every
  other row (split by the spending policy). Added with a plain ``ALTER TABLE`` (no batch rebuild on
  SQLite, which would drop the append-only triggers).
- ``open_client.deactivated_at``: when ``flask clients deactivate`` last stopped the client.
"""
from alembic import op
import sqlalchemy as sa


revision = '9f3c1d7e5a20'
down_revision = '483d37308e5b'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('ledger_entry', sa.Column('split_principal_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
    op.add_column('open_client', sa.Column('deactivated_at', sa.DateTime(), nullable=True))


def downgrade():
    # Plain DROP COLUMN (SQLite >= 3.35 and MariaDB): a batch rebuild would drop ledger_entry's triggers.
    op.execute("ALTER TABLE open_client DROP COLUMN deactivated_at")
    op.execute("ALTER TABLE ledger_entry DROP COLUMN split_principal_fen")
