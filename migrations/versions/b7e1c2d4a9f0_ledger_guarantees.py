"""ledger guarantees: append-only triggers, the refund guard, the wallet's frozen flag

Revision ID: b7e1c2d4a9f0
Revises: 03d90e4c30dc
Create Date: 2026-11-23 19:00:00

- Triggers refuse UPDATE and DELETE on ``ledger_entry`` (MariaDB/MySQL and SQLite): append-only is a
  rule of the database. A correction is a new row. (Later migrations that rebuild ``ledger_entry`` in
  batch mode on SQLite drop its triggers and must create them again; tests/ledger checks they exist.)
- ``payment_refundable``: per refunded payment, what it took and what was refunded, guarded by CHECKs.
  Backfilled from the refunds already in the ledger.
- ``wallet.frozen``: what the ledger needs to know about the member, so it no longer reads ``member``.
"""
from alembic import op
import sqlalchemy as sa


revision = 'b7e1c2d4a9f0'
down_revision = '03d90e4c30dc'
branch_labels = None
depends_on = None

MESSAGE = "ledger_entry is append-only: correct a mistake with a new entry"


def _create_triggers() -> None:
    bind = op.get_bind()
    for action in ("UPDATE", "DELETE"):
        name = f"ledger_entry_no_{action.lower()}"
        if bind.dialect.name == "sqlite":
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON ledger_entry "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON ledger_entry FOR EACH ROW "
                f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{MESSAGE}'"
            )


def upgrade():
    op.create_table('payment_refundable',
    sa.Column('payment_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('taken_principal_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('taken_bonus_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refunded_principal_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refunded_bonus_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('refunded_principal_fen <= taken_principal_fen AND refunded_bonus_fen <= taken_bonus_fen', name=op.f('ck_payment_refundable_refunded_within_taken')),
    sa.CheckConstraint('refunded_principal_fen >= 0 AND refunded_bonus_fen >= 0', name=op.f('ck_payment_refundable_refunded_non_negative')),
    sa.CheckConstraint('taken_principal_fen >= 0 AND taken_bonus_fen >= 0', name=op.f('ck_payment_refundable_taken_non_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['wallet.member_id'], name=op.f('fk_payment_refundable_member_id_wallet')),
    sa.ForeignKeyConstraint(['payment_entry_id'], ['ledger_entry.id'], name=op.f('fk_payment_refundable_payment_entry_id_ledger_entry')),
    sa.PrimaryKeyConstraint('payment_entry_id', name=op.f('pk_payment_refundable'))
    )
    with op.batch_alter_table('payment_refundable', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_refundable_member_id'), ['member_id'], unique=False)

    with op.batch_alter_table('wallet', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frozen', sa.Boolean(), server_default=sa.text('0'), nullable=False))

    # Data: cards already frozen or lost, and the refunds already made.
    op.execute("UPDATE wallet SET frozen = 1 WHERE member_id IN (SELECT id FROM member WHERE status <> 'active')")
    op.execute(
        """
        INSERT INTO payment_refundable (payment_entry_id, member_id, taken_principal_fen, taken_bonus_fen,
                                        refunded_principal_fen, refunded_bonus_fen)
        SELECT p.id, p.member_id,
               CASE WHEN p.kind = 'capture' THEN -h.principal_delta_fen - p.principal_delta_fen
                    ELSE -p.principal_delta_fen END,
               CASE WHEN p.kind = 'capture' THEN -h.bonus_delta_fen - p.bonus_delta_fen
                    ELSE -p.bonus_delta_fen END,
               SUM(r.principal_delta_fen), SUM(r.bonus_delta_fen)
        FROM ledger_entry p
        JOIN ledger_entry r ON r.related_entry_id = p.id AND r.kind = 'refund'
        LEFT JOIN ledger_entry h ON h.id = p.related_entry_id AND p.kind = 'capture'
        WHERE p.kind IN ('debit', 'capture')
        GROUP BY p.id, p.member_id, p.kind, p.principal_delta_fen, p.bonus_delta_fen,
                 h.principal_delta_fen, h.bonus_delta_fen
        """
    )
    _create_triggers()


def downgrade():
    op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_update")
    op.execute("DROP TRIGGER IF EXISTS ledger_entry_no_delete")
    op.drop_table('payment_refundable')
    with op.batch_alter_table('wallet', schema=None) as batch_op:
        batch_op.drop_column('frozen')
