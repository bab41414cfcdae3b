"""offline and batch recharges, balance notices

Revision ID: cc88d471ffcc
Revises: c3a8e5f1d2b7
Create Date: 2026-11-23 19:09:26.107000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = 'cc88d471ffcc'
down_revision = 'c3a8e5f1d2b7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('recharge_batch',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('content_sha256', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('total_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('applied', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'done')", name=op.f('ck_recharge_batch_status_known')),
    sa.CheckConstraint('applied >= 0 AND failed >= 0 AND applied + failed <= total', name=op.f('ck_recharge_batch_progress_within_total')),
    sa.CheckConstraint('total > 0 AND total_fen > 0', name=op.f('ck_recharge_batch_total_positive')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_recharge_batch_staff_id_staff')),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], name=op.f('fk_recharge_batch_store_id_store')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recharge_batch')),
    sa.UniqueConstraint('content_sha256', name=op.f('uq_recharge_batch_content_sha256'))
    )
    with op.batch_alter_table('recharge_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recharge_batch_staff_id'), ['staff_id'], unique=False)

    op.create_table('balance_notice',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('openid', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=True),
    sa.Column('template_id', sa.String(length=64), nullable=True),
    sa.Column('msgid', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('sending', 'sent', 'skipped', 'failed')", name=op.f('ck_balance_notice_status_known')),
    sa.CheckConstraint('attempts >= 1', name=op.f('ck_balance_notice_attempts_positive')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_balance_notice_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_balance_notice_member_id_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_balance_notice')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_balance_notice_entry_id'))
    )
    with op.batch_alter_table('balance_notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_balance_notice_member_id'), ['member_id'], unique=False)

    op.create_table('offline_recharge',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('receipt_no', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('bonus_fen', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('coupon_template_id', sa.Integer(), nullable=True),
    sa.Column('coupon_qty', sa.Integer(), nullable=False),
    sa.Column('card_type_id', sa.Integer(), nullable=True),
    sa.Column('card_only_non_members', sa.Boolean(), nullable=False),
    sa.Column('coupons_granted', sa.Integer(), nullable=False),
    sa.Column('coupons_lapsed', sa.Integer(), nullable=False),
    sa.Column('card_outcome', sa.String(length=16), nullable=True),
    sa.Column('reward_note', sa.String(length=255), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('principal_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('bonus_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("method IN ('cash', 'card_terminal')", name=op.f('ck_offline_recharge_method_known')),
    sa.CheckConstraint('amount_fen > 0 AND amount_fen <= 100000000', name=op.f('ck_offline_recharge_amount_positive')),
    sa.CheckConstraint('bonus_fen >= 0', name=op.f('ck_offline_recharge_bonus_non_negative')),
    sa.CheckConstraint('coupon_qty >= 0 AND coupons_granted >= 0 AND coupons_lapsed >= 0', name=op.f('ck_offline_recharge_coupons_non_negative')),
    sa.CheckConstraint('points >= 0', name=op.f('ck_offline_recharge_points_non_negative')),
    sa.ForeignKeyConstraint(['bonus_entry_id'], ['ledger_entry.id'], name=op.f('fk_offline_recharge_bonus_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['card_type_id'], ['card_type.id'], name=op.f('fk_offline_recharge_card_type_id_card_type')),
    sa.ForeignKeyConstraint(['coupon_template_id'], ['coupon_template.id'], name=op.f('fk_offline_recharge_coupon_template_id_coupon_template')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_offline_recharge_member_id_member')),
    sa.ForeignKeyConstraint(['principal_entry_id'], ['ledger_entry.id'], name=op.f('fk_offline_recharge_principal_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['rule_id'], ['recharge_rule.id'], name=op.f('fk_offline_recharge_rule_id_recharge_rule')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_offline_recharge_staff_id_staff')),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], name=op.f('fk_offline_recharge_store_id_store')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offline_recharge')),
    sa.UniqueConstraint('store_id', 'receipt_no', name='uq_offline_recharge_store_receipt')
    )
    with op.batch_alter_table('offline_recharge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offline_recharge_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_offline_recharge_rule_id'), ['rule_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_offline_recharge_staff_id'), ['staff_id'], unique=False)

    op.create_table('recharge_batch_row',
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('row_no', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('error', sa.String(length=255), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'applied', 'failed')", name=op.f('ck_recharge_batch_row_status_known')),
    sa.CheckConstraint('amount_fen > 0 AND amount_fen <= 100000000', name=op.f('ck_recharge_batch_row_amount_positive')),
    sa.CheckConstraint('row_no > 0', name=op.f('ck_recharge_batch_row_row_no_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['recharge_batch.id'], name=op.f('fk_recharge_batch_row_batch_id_recharge_batch')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_recharge_batch_row_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_recharge_batch_row_member_id_member')),
    sa.PrimaryKeyConstraint('batch_id', 'row_no', name=op.f('pk_recharge_batch_row'))
    )
    with op.batch_alter_table('recharge_batch_row', schema=None) as batch_op:
        batch_op.create_index('ix_recharge_batch_row_batch_id_status', ['batch_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_recharge_batch_row_member_id'), ['member_id'], unique=False)



def downgrade():
    # Dropping a table drops its indexes; dropping an index first fails on MariaDB while a foreign key uses it.
    op.drop_table('recharge_batch_row')
    op.drop_table('offline_recharge')
    op.drop_table('balance_notice')
    op.drop_table('recharge_batch')
