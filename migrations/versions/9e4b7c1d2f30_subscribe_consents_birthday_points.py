"""mini-program subscribe consents, the reminder's channel, birthday points

Revision ID: 9e4b7c1d2f30
Revises: 9da6c4cc8cc1
Create Date: 2026-11-23 21:40:00

Issue 14: reminders go out as mini-program subscribe messages where the member accepted one
(``subscribe_consent``, one row per accepted consent, used once), else as official-account template
messages (``points_reminder.channel``); the merchant may give points on a member's birthday
(``points_settings.birthday_points``, 0 = a greeting only).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "9e4b7c1d2f30"
down_revision = "9da6c4cc8cc1"
branch_labels = None
depends_on = None


def _exact(length):
    return (
        sa.String(length=length)
        .with_variant(mysql.VARCHAR(collation="utf8mb4_nopad_bin", length=length), "mariadb")
        .with_variant(mysql.VARCHAR(collation="utf8mb4_nopad_bin", length=length), "mysql")
    )


def upgrade():
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    with op.batch_alter_table("points_reminder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=4), server_default="mp", nullable=False))
        batch_op.create_check_constraint(op.f("ck_points_reminder_channel_known"), "channel IN ('mp', 'wxa')")
    with op.batch_alter_table("points_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birthday_points", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_check_constraint(
            op.f("ck_points_settings_birthday_points_range"), "birthday_points BETWEEN 0 AND 100000"
        )
    op.create_table(
        "subscribe_consent",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("openid", _exact(64), nullable=False),
        sa.Column("template_id", _exact(64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reminder_id", big_id, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("status IN ('unused', 'used', 'refused')", name=op.f("ck_subscribe_consent_status_known")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_subscribe_consent_member_id_member")),
        sa.ForeignKeyConstraint(
            ["reminder_id"], ["points_reminder.id"], name=op.f("fk_subscribe_consent_reminder_id_points_reminder")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribe_consent")),
    )
    op.create_index("ix_subscribe_consent_member_template", "subscribe_consent", ["member_id", "template_id", "status"])


def downgrade():
    op.drop_table("subscribe_consent")
    with op.batch_alter_table("points_settings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_points_settings_birthday_points_range"), type_="check")
        batch_op.drop_column("birthday_points")
    with op.batch_alter_table("points_reminder", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_points_reminder_channel_known"), type_="check")
        batch_op.drop_column("channel")
