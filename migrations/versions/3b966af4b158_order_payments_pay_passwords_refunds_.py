"""order payments, pay passwords, refunds, recharge refunds

Revision ID: 3b966af4b158
Revises: a4f7965b8f75
Create Date: 2026-11-23 19:06:08.591221

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = '3b966af4b158'
down_revision = 'a4f7965b8f75'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('pay_password',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('failed_count', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('failed_count >= 0 AND failed_count < 5', name=op.f('ck_pay_password_failed_count_range')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_pay_password_member_id_member')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_pay_password'))
    )
    op.create_table('order_payment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('order_no', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('request_id', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('amount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('discount_percent', sa.Integer(), nullable=False),
    sa.Column('discount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payable_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('balance_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('wechat_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refunded_balance_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refunded_wechat_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('debit_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('hold_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('capture_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('void_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('out_trade_no', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('appid', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('mch_id', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('openid', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=True),
    sa.Column('sign_type', sa.String(length=12), nullable=True),
    sa.Column('prepay_id', sa.String(length=64), nullable=True),
    sa.Column('transaction_id', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('failure', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('paid_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'paid', 'failed')", name=op.f('ck_order_payment_status_known')),
    sa.CheckConstraint('amount_fen > 0', name=op.f('ck_order_payment_amount_positive')),
    sa.CheckConstraint('balance_fen >= 0 AND wechat_fen >= 0 AND balance_fen + wechat_fen = payable_fen', name=op.f('ck_order_payment_parts_sum')),
    sa.CheckConstraint('discount_fen >= 0 AND discount_fen < amount_fen', name=op.f('ck_order_payment_discount_range')),
    sa.CheckConstraint('discount_percent BETWEEN 1 AND 100', name=op.f('ck_order_payment_discount_percent_range')),
    sa.CheckConstraint('payable_fen = amount_fen - discount_fen', name=op.f('ck_order_payment_payable_is_amount_less_discount')),
    sa.CheckConstraint('refunded_balance_fen >= 0 AND refunded_balance_fen <= balance_fen', name=op.f('ck_order_payment_refunded_balance_within_part')),
    sa.CheckConstraint('refunded_wechat_fen >= 0 AND refunded_wechat_fen <= wechat_fen', name=op.f('ck_order_payment_refunded_wechat_within_part')),
    sa.ForeignKeyConstraint(['capture_entry_id'], ['ledger_entry.id'], name=op.f('fk_order_payment_capture_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['debit_entry_id'], ['ledger_entry.id'], name=op.f('fk_order_payment_debit_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['hold_entry_id'], ['ledger_entry.id'], name=op.f('fk_order_payment_hold_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_order_payment_member_id_member')),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], name=op.f('fk_order_payment_store_id_store')),
    sa.ForeignKeyConstraint(['void_entry_id'], ['ledger_entry.id'], name=op.f('fk_order_payment_void_entry_id_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_payment')),
    sa.UniqueConstraint('member_id', 'order_no', name='uq_order_payment_member_order_no'),
    sa.UniqueConstraint('member_id', 'request_id', name='uq_order_payment_member_request_id'),
    sa.UniqueConstraint('out_trade_no', name=op.f('uq_order_payment_out_trade_no')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_order_payment_transaction_id'))
    )
    with op.batch_alter_table('order_payment', schema=None) as batch_op:
        batch_op.create_index('ix_order_payment_order_no', ['order_no'], unique=False)
        batch_op.create_index('ix_order_payment_status_created_at', ['status', 'created_at'], unique=False)

    op.create_table('recharge_refund',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=24), nullable=False),
    sa.Column('principal_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bonus_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bonus_spent_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('take_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('cash_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hold_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('settle_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('out_refund_no', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=False),
    sa.Column('refund_id', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('coupons_voided', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('failure', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("policy IN ('deduct_spent_bonus', 'refuse')", name=op.f('ck_recharge_refund_policy_known')),
    sa.CheckConstraint("status IN ('processing', 'success', 'failed')", name=op.f('ck_recharge_refund_status_known')),
    sa.CheckConstraint('cash_fen > 0 AND cash_fen = principal_fen - bonus_spent_fen', name=op.f('ck_recharge_refund_cash_is_principal_less_spent')),
    sa.CheckConstraint('coupons_voided >= 0', name=op.f('ck_recharge_refund_coupons_voided_non_negative')),
    sa.CheckConstraint('principal_fen > 0 AND bonus_fen >= 0 AND bonus_spent_fen >= 0', name=op.f('ck_recharge_refund_amounts_non_negative')),
    sa.CheckConstraint('take_fen = principal_fen + bonus_fen', name=op.f('ck_recharge_refund_take_is_principal_and_bonus')),
    sa.ForeignKeyConstraint(['hold_entry_id'], ['ledger_entry.id'], name=op.f('fk_recharge_refund_hold_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_recharge_refund_member_id_member')),
    sa.ForeignKeyConstraint(['order_id'], ['recharge_order.id'], name=op.f('fk_recharge_refund_order_id_recharge_order')),
    sa.ForeignKeyConstraint(['settle_entry_id'], ['ledger_entry.id'], name=op.f('fk_recharge_refund_settle_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_recharge_refund_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recharge_refund')),
    sa.UniqueConstraint('order_id', name=op.f('uq_recharge_refund_order_id')),
    sa.UniqueConstraint('out_refund_no', name=op.f('uq_recharge_refund_out_refund_no')),
    sa.UniqueConstraint('refund_id', name=op.f('uq_recharge_refund_refund_id'))
    )
    with op.batch_alter_table('recharge_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recharge_refund_member_id'), ['member_id'], unique=False)

    op.create_table('payment_refund',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('amount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('balance_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('wechat_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refund_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('out_refund_no', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('refund_id', sa.String(length=32).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=32), 'mysql'), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('operator', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('failure', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('processing', 'success', 'failed')", name=op.f('ck_payment_refund_status_known')),
    sa.CheckConstraint('amount_fen > 0', name=op.f('ck_payment_refund_amount_positive')),
    sa.CheckConstraint('balance_fen >= 0 AND wechat_fen >= 0 AND balance_fen + wechat_fen = amount_fen', name=op.f('ck_payment_refund_parts_sum')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_payment_refund_member_id_member')),
    sa.ForeignKeyConstraint(['payment_id'], ['order_payment.id'], name=op.f('fk_payment_refund_payment_id_order_payment')),
    sa.ForeignKeyConstraint(['refund_entry_id'], ['ledger_entry.id'], name=op.f('fk_payment_refund_refund_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_payment_refund_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_refund')),
    sa.UniqueConstraint('out_refund_no', name=op.f('uq_payment_refund_out_refund_no')),
    sa.UniqueConstraint('payment_id', 'request_id', name='uq_payment_refund_payment_request_id'),
    sa.UniqueConstraint('refund_id', name=op.f('uq_payment_refund_refund_id'))
    )
    with op.batch_alter_table('payment_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_refund_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_payment_refund_payment_id', ['payment_id'], unique=False)



def downgrade():
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key still needs).
    op.drop_table('payment_refund')
    op.drop_table('recharge_refund')
    op.drop_table('order_payment')
    op.drop_table('pay_password')
