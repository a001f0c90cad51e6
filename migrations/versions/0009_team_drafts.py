"""team drafts and disabled approvers (issue 9): a TEAM_UPDATE session keeps the draft its votes
sign, a session the approvers disabled while it was open, and an invited member the key the
team approved for it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns added in place (no batch copy): existing rows mean "no draft", "nobody
    # excluded" and "any key", which is what they meant before.
    op.add_column("sessions", sa.Column("team_draft", sa.JSON(), nullable=True))
    op.add_column("sessions", sa.Column("excluded_approvers", sa.JSON(), nullable=True))
    op.add_column("team_members", sa.Column("approved_key", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    op.drop_column("team_members", "approved_key")
    op.drop_column("sessions", "excluded_approvers")
    op.drop_column("sessions", "team_draft")
