"""notifications: webhook endpoints, the transactional outbox, delivery attempts, reminders

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification_endpoints",
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("body_format", sa.String(16), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("endpoint_id", name="pk_notification_endpoints"),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(64), nullable=False),
        sa.Column("dedupe_key", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", TIME, nullable=False),
        sa.Column("lease", sa.String(32), nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("deliver_time", TIME, nullable=True),
        sa.PrimaryKeyConstraint("notification_id", name="pk_notifications"),
        sa.UniqueConstraint("dedupe_key", name="uq_notifications_dedupe_key"),
    )
    op.create_index("ix_notifications_target", "notifications", ["target"])
    op.create_index("ix_notifications_state_due", "notifications", ["state", "next_attempt_time"])
    op.create_index(
        "ix_notifications_create_time_id", "notifications", ["create_time", "notification_id"]
    )
    op.create_table(
        "notification_attempts",
        sa.Column("notification_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempt_time", TIME, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(500), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name="fk_notification_attempts_notification_id_notifications",
        ),
        sa.PrimaryKeyConstraint("notification_id", "attempt", name="pk_notification_attempts"),
    )
    op.create_table(
        "session_reminders",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.session_id"],
            name="fk_session_reminders_session_id_sessions",
        ),
        sa.PrimaryKeyConstraint("session_id", "step", name="pk_session_reminders"),
    )


def downgrade() -> None:
    op.drop_table("session_reminders")
    op.drop_table("notification_attempts")
    op.drop_index("ix_notifications_create_time_id", table_name="notifications")
    op.drop_index("ix_notifications_state_due", table_name="notifications")
    op.drop_index("ix_notifications_target", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_endpoints")
