"""recharge orders: status paid_uncredited (paid while the card was frozen or lost)

Revision ID: 5d1c7a2e9b40
Revises: 889ba45e9968
Create Date: 2026-11-23 19:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = '5d1c7a2e9b40'
down_revision = '889ba45e9968'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('recharge_order', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_recharge_order_status_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_recharge_order_paid_has_transaction'), type_='check')
        batch_op.alter_column('status', existing_type=sa.String(length=10), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.create_check_constraint(
            batch_op.f('ck_recharge_order_status_known'),
            "status IN ('pending', 'paid', 'paid_uncredited', 'closed')")
        batch_op.create_check_constraint(
            batch_op.f('ck_recharge_order_paid_has_transaction'),
            "status IN ('pending', 'closed') OR transaction_id IS NOT NULL")


def downgrade():
    with op.batch_alter_table('recharge_order', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_recharge_order_status_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_recharge_order_paid_has_transaction'), type_='check')
        batch_op.alter_column('status', existing_type=sa.String(length=16), type_=sa.String(length=10),
                              existing_nullable=False)
        batch_op.create_check_constraint(
            batch_op.f('ck_recharge_order_status_known'), "status IN ('pending', 'paid', 'closed')")
        batch_op.create_check_constraint(
            batch_op.f('ck_recharge_order_paid_has_transaction'), "status <> 'paid' OR transaction_id IS NOT NULL")
