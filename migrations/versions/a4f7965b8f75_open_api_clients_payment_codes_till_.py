"""open api clients, payment codes, till charges and refunds

Revision ID: a4f7965b8f75
Revises: cc88d471ffcc
Create Date: 2026-11-23 19:07:47

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = 'a4f7965b8f75'
down_revision = 'cc88d471ffcc'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('open_client',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=40).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=40), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=40), 'mysql'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('secret_ciphertext', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], name=op.f('fk_open_client_store_id_store')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open_client')),
    sa.UniqueConstraint('client_id', name=op.f('uq_open_client_client_id'))
    )
    with op.batch_alter_table('open_client', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_open_client_store_id'), ['store_id'], unique=False)

    op.create_table('open_nonce',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['open_client.id'], name=op.f('fk_open_nonce_client_id_open_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open_nonce')),
    sa.UniqueConstraint('client_id', 'nonce', name='uq_open_nonce_client_nonce')
    )
    with op.batch_alter_table('open_nonce', schema=None) as batch_op:
        batch_op.create_index('ix_open_nonce_created_at', ['created_at'], unique=False)

    op.create_table('open_request',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('status_code BETWEEN 200 AND 299', name=op.f('ck_open_request_status_code_success')),
    sa.ForeignKeyConstraint(['client_id'], ['open_client.id'], name=op.f('fk_open_request_client_id_open_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_open_request')),
    sa.UniqueConstraint('client_id', 'idempotency_key', name='uq_open_request_client_key')
    )
    op.create_table('pay_code',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('code_hash', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_pay_code_member_id_member')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_pay_code')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_pay_code_code_hash'))
    )
    op.create_table('till_charge',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('order_no', sa.String(length=64).with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mariadb').with_variant(mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=64), 'mysql'), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('amount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('principal_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bonus_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('paid_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refunded_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('settle_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('charge', 'hold')", name=op.f('ck_till_charge_kind_known')),
    sa.CheckConstraint("status IN ('paid', 'held', 'captured', 'voided')", name=op.f('ck_till_charge_status_known')),
    sa.CheckConstraint('amount_fen > 0', name=op.f('ck_till_charge_amount_positive')),
    sa.CheckConstraint('paid_fen >= 0 AND paid_fen <= amount_fen', name=op.f('ck_till_charge_paid_within_amount')),
    sa.CheckConstraint('principal_fen + bonus_fen = amount_fen', name=op.f('ck_till_charge_split_is_amount')),
    sa.CheckConstraint('principal_fen >= 0 AND bonus_fen >= 0', name=op.f('ck_till_charge_split_non_negative')),
    sa.CheckConstraint('refunded_fen >= 0 AND refunded_fen <= paid_fen', name=op.f('ck_till_charge_refunded_within_paid')),
    sa.ForeignKeyConstraint(['client_id'], ['open_client.id'], name=op.f('fk_till_charge_client_id_open_client')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_till_charge_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_till_charge_member_id_member')),
    sa.ForeignKeyConstraint(['settle_entry_id'], ['ledger_entry.id'], name=op.f('fk_till_charge_settle_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], name=op.f('fk_till_charge_store_id_store')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_till_charge')),
    sa.UniqueConstraint('client_id', 'order_no', name='uq_till_charge_client_order_no'),
    sa.UniqueConstraint('entry_id', name=op.f('uq_till_charge_entry_id')),
    sa.UniqueConstraint('settle_entry_id', name=op.f('uq_till_charge_settle_entry_id'))
    )
    with op.batch_alter_table('till_charge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_till_charge_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_till_charge_store_id'), ['store_id'], unique=False)

    op.create_table('till_refund',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('charge_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('principal_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bonus_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('amount_fen > 0', name=op.f('ck_till_refund_amount_positive')),
    sa.CheckConstraint('principal_fen + bonus_fen = amount_fen', name=op.f('ck_till_refund_split_is_amount')),
    sa.CheckConstraint('principal_fen >= 0 AND bonus_fen >= 0', name=op.f('ck_till_refund_split_non_negative')),
    sa.ForeignKeyConstraint(['charge_id'], ['till_charge.id'], name=op.f('fk_till_refund_charge_id_till_charge')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_till_refund_entry_id_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_till_refund')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_till_refund_entry_id'))
    )
    with op.batch_alter_table('till_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_till_refund_charge_id'), ['charge_id'], unique=False)



def downgrade():
    # Dropping a table drops its indexes; MariaDB refuses to drop an index a foreign key still needs.
    for table in ('till_refund', 'till_charge', 'pay_code', 'open_request', 'open_nonce', 'open_client'):
        op.drop_table(table)
