"""unsequenced events (issue 11): on PostgreSQL use cases commit their events unsequenced, and
one sequencer gives them seq and hashes in batches, so no request waits on the log's head row;
`events.origin` names the unsequenced event each came from (unique: never sequenced twice)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 00:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unsequenced_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("txn", sa.LargeBinary(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("notice", sa.JSON(), nullable=True),
        sa.Column("mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unsequenced_events")),
    )
    # Adding a nullable column rewrites no row: the append-only triggers are not involved.
    op.add_column("events", sa.Column("origin", sa.LargeBinary(length=20), nullable=True))
    op.create_index("ix_events_origin", "events", ["origin"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_origin", table_name="events")
    op.drop_column("events", "origin")
    op.drop_table("unsequenced_events")
