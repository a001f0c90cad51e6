"""event reads by seq: the head row keeps the last event's time (appenders never stamp an
event earlier than it), (time, seq) replaces the time index, and an expression index on the
actor's kind: every filtered page of ListEvents is then an ordered range of seq

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here rather than imported from the models (persistence/models.py ActorKind): the same
# text, so the planner matches the queries' expression to the index.
ACTOR_KIND = {
    "postgresql": "split_part(actor, ':', 1)",
    "sqlite": "substr(actor, 1, instr(actor || ':', ':') - 1)",
}


def upgrade() -> None:
    # ALTER TABLE ADD COLUMN, not a batch copy: a copy of log_head would lose its trigger.
    op.add_column("log_head", sa.Column("time", sa.DateTime(timezone=True), nullable=True))
    # Events up to this seq were stamped before the monotone rule and may be out of time order:
    # time-range reads filter them row by row (a prefix that no longer grows).
    op.add_column(
        "log_head",
        sa.Column("time_ordered_after", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # log_head's trigger refuses DELETE only. The events themselves are never changed: the new
    # indexes need no backfill. The latest time of all, not the head's: an older event may be
    # later than the head, and no new event may be stamped before any of them.
    op.execute(
        "UPDATE log_head SET time = (SELECT max(time) FROM events), time_ordered_after = seq"
    )
    op.create_index("ix_events_time_seq", "events", ["time", "seq"], unique=False)
    op.drop_index("ix_events_time", table_name="events")
    kind = ACTOR_KIND[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_events_actor_kind_seq ON events ({kind}, seq)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_events_actor_kind_seq")
    op.create_index("ix_events_time", "events", ["time"], unique=False)
    op.drop_index("ix_events_time_seq", table_name="events")
    op.drop_column("log_head", "time_ordered_after")
    op.drop_column("log_head", "time")
