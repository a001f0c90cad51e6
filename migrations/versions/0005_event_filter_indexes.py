"""event filter indexes: (type, seq) and (actor, seq), so a filtered page of ListEvents is an
ordered index range whatever the size of the log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 21:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Indexes only: the append-only triggers guard rows, not the schema.
    op.create_index("ix_events_type_seq", "events", ["type", "seq"], unique=False)
    op.create_index("ix_events_actor_seq", "events", ["actor", "seq"], unique=False)
    op.drop_index("ix_events_type", table_name="events")
    op.drop_index("ix_events_actor", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_actor", "events", ["actor"], unique=False)
    op.create_index("ix_events_type", "events", ["type"], unique=False)
    op.drop_index("ix_events_actor_seq", table_name="events")
    op.drop_index("ix_events_type_seq", table_name="events")
