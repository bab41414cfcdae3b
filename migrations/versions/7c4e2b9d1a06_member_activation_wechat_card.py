"""member-card activation (member.activated_at) and WeChat's member card: the card a member holds in
WeChat with its balance/points mirror, and the card's notification log

Revision ID: 7c4e2b9d1a06
Revises: 7a1d4c9e2b63
Create Date: 2026-11-23 22:30:00

"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = "7c4e2b9d1a06"
down_revision = "7a1d4c9e2b63"
branch_labels = None
depends_on = None


def _exact(length):
    exact = mysql.VARCHAR(length, collation="utf8mb4_nopad_bin")
    return sa.String(length=length).with_variant(exact, "mysql").with_variant(exact, "mariadb")


def upgrade():
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activated_at", sa.DateTime(), nullable=True))

    op.create_table(
        "wechat_card",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("card_id", _exact(64), nullable=False),
        sa.Column("code", _exact(64), nullable=False),
        sa.Column("openid", _exact(64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("membership_number", sa.String(length=20), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("sync_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("pushed_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("push_token", _exact(32), nullable=True),
        sa.Column("push_claimed_at", sa.DateTime(), nullable=True),
        sa.Column("pushed_balance_fen", sa.BigInteger(), nullable=True),
        sa.Column("pushed_points", sa.BigInteger(), nullable=True),
        sa.Column("pushed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'submitted', 'activating', 'activated', 'rejected')",
            name=op.f("ck_wechat_card_status_known"),
        ),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_wechat_card_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_card")),
        sa.UniqueConstraint("card_id", "code", name="uq_wechat_card_card_code"),
        sa.UniqueConstraint("member_id", name=op.f("uq_wechat_card_member_id")),
    )
    op.create_table(
        "wechat_card_push",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("wechat_card_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("errcode", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("action IN ('activate', 'update')", name=op.f("ck_wechat_card_push_action_known")),
        sa.CheckConstraint("status IN ('sent', 'failed')", name=op.f("ck_wechat_card_push_status_known")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_wechat_card_push_member_id_member")),
        sa.ForeignKeyConstraint(
            ["wechat_card_id"], ["wechat_card.id"], name=op.f("fk_wechat_card_push_wechat_card_id_wechat_card")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_card_push")),
    )
    with op.batch_alter_table("wechat_card_push", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wechat_card_push_member_id"), ["member_id"], unique=False)


def downgrade():
    # The FK's index first is not needed: dropping the table drops its indexes with it.
    op.drop_table("wechat_card_push")
    op.drop_table("wechat_card")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_column("activated_at")
