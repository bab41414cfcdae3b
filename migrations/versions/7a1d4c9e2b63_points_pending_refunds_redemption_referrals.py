"""points wired into payments: pending lots, points refunds, redemption at checkout, referrals

Revision ID: 7a1d4c9e2b63
Revises: 9e4b7c1d2f30
Create Date: 2026-11-23 21:40:00

- ``points_lot.status`` (available / pending / voided) and ``available_at``;
- ``points_entry.kind`` also ``pending``, ``release``, ``void``, ``restore``. SQLite cannot alter a
  CHECK: the table is rebuilt from its own CREATE statement with the new list, rows copied, its index
  and its append-only triggers (c3a8e5f1d2b7, e1f2a3b4c5d6) created again;
- settings ``pending_days``, ``referral_points``, ``referral_monthly_cap``;
- ``order_payment.points_used`` / ``points_fen`` (points redeemed at checkout);
- ``points_refund`` (what each refund did to its payment's points), ``referral_code``, ``referral``.
"""
import re

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql


revision = '7a1d4c9e2b63'
down_revision = '9e4b7c1d2f30'
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('award', 'spend', 'expire', 'reversal')"
NEW_KINDS = "kind IN ('award', 'spend', 'expire', 'reversal', 'pending', 'release', 'void', 'restore')"
APPEND_ONLY = "points_entry is append-only: correct a mistake with a new entry"


def _id():
    return sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _exact(length):
    exact = mysql.VARCHAR(collation='utf8mb4_nopad_bin', length=length)
    return sa.String(length=length).with_variant(exact, 'mariadb').with_variant(exact, 'mysql')


def _sqlite_points_entry_kinds(old, new):
    bind = op.get_bind()
    create = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'points_entry'")).scalar()
    assert old in create, create
    create = re.sub(r'^CREATE TABLE "?points_entry"?', 'CREATE TABLE points_entry_rebuilt', create.replace(old, new))
    op.execute(create)
    op.execute("INSERT INTO points_entry_rebuilt SELECT * FROM points_entry")
    op.execute("DROP TABLE points_entry")  # its index and triggers go with it
    op.execute("ALTER TABLE points_entry_rebuilt RENAME TO points_entry")
    op.execute("CREATE INDEX ix_points_entry_member_id_id ON points_entry (member_id, id)")
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER points_entry_no_{action.lower()} BEFORE {action} ON points_entry "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )
    for column in ("id", "idempotency_key"):
        op.execute(
            f"CREATE TRIGGER points_entry_no_replace_{column} BEFORE INSERT ON points_entry "
            f"WHEN NEW.{column} IS NOT NULL AND EXISTS (SELECT 1 FROM points_entry WHERE {column} = NEW.{column}) "
            f"BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: points_entry.{column}'); END"
        )


def _points_entry_kinds(old, new):
    if op.get_bind().dialect.name == 'sqlite':
        _sqlite_points_entry_kinds(old, new)
    else:
        op.execute("ALTER TABLE points_entry DROP CONSTRAINT ck_points_entry_kind_known")
        op.execute(f"ALTER TABLE points_entry ADD CONSTRAINT ck_points_entry_kind_known CHECK ({new})")


def _add_checked_column(table, column, sql_type, check_name, check, default=0):
    """A NOT NULL column with a default and its named CHECK (SQLite takes a CHECK in ADD COLUMN only)."""
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN {column} {sql_type} NOT NULL DEFAULT {default} "
            f"CONSTRAINT {check_name} CHECK ({check})"
        )
    else:
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type} NOT NULL DEFAULT {default}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {check_name} CHECK ({check})")


def upgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute(
            "ALTER TABLE points_lot ADD COLUMN status VARCHAR(10) NOT NULL DEFAULT 'available' "
            "CONSTRAINT ck_points_lot_status_known CHECK (status IN ('available', 'pending', 'voided'))"
        )
    else:
        op.execute("ALTER TABLE points_lot ADD COLUMN status VARCHAR(10) NOT NULL DEFAULT 'available'")
        op.execute(
            "ALTER TABLE points_lot ADD CONSTRAINT ck_points_lot_status_known "
            "CHECK (status IN ('available', 'pending', 'voided'))"
        )
    op.add_column('points_lot', sa.Column('available_at', sa.DateTime(), nullable=True))
    op.create_index('ix_points_lot_status_available_at', 'points_lot', ['status', 'available_at'])
    _points_entry_kinds(OLD_KINDS, NEW_KINDS)

    big = 'INTEGER' if sqlite else 'BIGINT'
    _add_checked_column('points_settings', 'pending_days', 'INTEGER', 'ck_points_settings_pending_days_range',
                        'pending_days BETWEEN 0 AND 90')
    _add_checked_column('points_settings', 'referral_points', 'INTEGER', 'ck_points_settings_referral_points_range',
                        'referral_points BETWEEN 0 AND 1000000')
    _add_checked_column('points_settings', 'referral_monthly_cap', 'INTEGER',
                        'ck_points_settings_referral_monthly_cap_range', 'referral_monthly_cap BETWEEN 0 AND 10000',
                        default=10)
    _add_checked_column('order_payment', 'points_used', big, 'ck_order_payment_points_used_non_negative',
                        'points_used >= 0')
    _add_checked_column('order_payment', 'points_fen', big, 'ck_order_payment_points_within_discount',
                        'points_fen >= 0 AND points_fen <= discount_fen')

    op.create_table('points_refund',
    sa.Column('id', _id(), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('payment_key', _exact(128), nullable=False),
    sa.Column('refund_key', _exact(128), nullable=False),
    sa.Column('refund_fen', _id(), nullable=False),
    sa.Column('payment_fen', _id(), nullable=False),
    sa.Column('due', _id(), nullable=False),
    sa.Column('voided', _id(), nullable=False),
    sa.Column('taken', _id(), nullable=False),
    sa.Column('shortfall', _id(), nullable=False),
    sa.Column('restored', _id(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('refund_fen >= 0 AND refund_fen <= payment_fen', name=op.f('ck_points_refund_refund_within_payment')),
    sa.CheckConstraint('voided >= 0 AND taken >= 0 AND shortfall >= 0 AND restored >= 0', name=op.f('ck_points_refund_counts_non_negative')),
    sa.CheckConstraint('due = voided + taken + shortfall', name=op.f('ck_points_refund_due_is_accounted')),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_points_refund_member_id_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_refund')),
    sa.UniqueConstraint('payment_key', 'refund_key', name='uq_points_refund_payment_refund')
    )
    op.create_index('ix_points_refund_member_id', 'points_refund', ['member_id'])
    op.create_table('referral_code',
    sa.Column('member_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('code', _exact(16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_referral_code_member_id_member')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_referral_code')),
    sa.UniqueConstraint('code', name=op.f('uq_referral_code_code'))
    )
    op.create_table('referral',
    sa.Column('id', _id(), autoincrement=True, nullable=False),
    sa.Column('inviter_id', sa.Integer(), nullable=False),
    sa.Column('invitee_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('points', _id(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('rewarded_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('bound', 'rewarded', 'capped')", name=op.f('ck_referral_status_known')),
    sa.CheckConstraint('inviter_id <> invitee_id', name=op.f('ck_referral_not_self')),
    sa.CheckConstraint('points >= 0', name=op.f('ck_referral_points_non_negative')),
    sa.ForeignKeyConstraint(['invitee_id'], ['member.id'], name=op.f('fk_referral_invitee_id_member')),
    sa.ForeignKeyConstraint(['inviter_id'], ['member.id'], name=op.f('fk_referral_inviter_id_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral')),
    sa.UniqueConstraint('invitee_id', name=op.f('uq_referral_invitee_id'))
    )
    op.create_index('ix_referral_inviter_id_month_status', 'referral', ['inviter_id', 'month', 'status'])


def downgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.drop_table('referral')
    op.drop_table('referral_code')
    op.drop_table('points_refund')
    # entries of the new kinds cannot stay under the old CHECK: downgrading needs a points ledger without them
    _points_entry_kinds(NEW_KINDS, OLD_KINDS)
    if not sqlite:
        for table, check in (
            ('order_payment', 'ck_order_payment_points_within_discount'),
            ('order_payment', 'ck_order_payment_points_used_non_negative'),
            ('points_settings', 'ck_points_settings_referral_monthly_cap_range'),
            ('points_settings', 'ck_points_settings_referral_points_range'),
            ('points_settings', 'ck_points_settings_pending_days_range'),
            ('points_lot', 'ck_points_lot_status_known'),
        ):
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {check}")
    op.drop_index('ix_points_lot_status_available_at', table_name='points_lot')
    for table, column in (
        ('order_payment', 'points_fen'),
        ('order_payment', 'points_used'),
        ('points_settings', 'referral_monthly_cap'),
        ('points_settings', 'referral_points'),
        ('points_settings', 'pending_days'),
        ('points_lot', 'available_at'),
        ('points_lot', 'status'),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
