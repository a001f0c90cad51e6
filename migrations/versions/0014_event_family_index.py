"""an expression index on an event type's family and seq: a family filter of ListEvents
("team.") is one ordered index range, not a branch per known type of the family

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here rather than imported from the models (persistence/models.py EventFamily): the
# same text, so the planner matches the queries' expression to the index.
FAMILY = {
    "postgresql": "split_part(type, '.', 1)",
    "sqlite": "substr(type, 1, instr(type || '.', '.') - 1)",
}


def upgrade() -> None:
    # The events are never changed (their triggers refuse UPDATE): an index needs no backfill,
    # and the rows, their chain and the head's signature are untouched.
    family = FAMILY[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_events_family_seq ON events ({family}, seq)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_events_family_seq")
