"""row MACs for approvers, accounts, teams, team shares and team deletions (issue 9): a database
writer can no longer re-enable an approver, roll a team back, or share a team through SQL

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MACED = ("approvers", "accounts", "teams", "team_shares", "team_deletions")


def upgrade() -> None:
    # Nullable: existing rows carry no MAC until `airlock-server seal` vouches for them.
    for table in MACED:
        op.add_column(table, sa.Column("mac", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    for table in reversed(MACED):
        op.drop_column(table, "mac")
