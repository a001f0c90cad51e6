"""approver activity: each approver's last activity per team, for team health

Filled from what is already stored: invitation answers (team_members.response_time) and votes
(a vote on a BASELINE session is a baseline answer). From now on the use cases keep it up to
date in the transaction of each vote and answer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The latest of every (team, approver)'s invitation answers and votes; SQLite (3.25+) and
# PostgreSQL both have window functions.
BACKFILL = """
INSERT INTO approver_activity (team_id, approver_id, kind, activity_time)
SELECT team_id, approver_id, kind, activity_time FROM (
    SELECT team_id, approver_id, kind, activity_time,
           ROW_NUMBER() OVER (
               PARTITION BY team_id, approver_id ORDER BY activity_time DESC, kind DESC
           ) AS rn
    FROM (
        SELECT team_id, approver_id, 'RESPONDED_TO_INVITATION' AS kind,
               response_time AS activity_time
        FROM team_members WHERE response_time IS NOT NULL
        UNION ALL
        SELECT s.team_id, v.approver_id,
               CASE WHEN s.kind = 'BASELINE' THEN 'BASELINED' ELSE 'VOTED' END,
               v.vote_time
        FROM votes v JOIN sessions s ON s.session_id = v.session_id
    ) AS everything
) AS ranked
WHERE rn = 1
"""


def upgrade() -> None:
    op.create_table(
        "approver_activity",
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("approver_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("activity_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["approver_id"],
            ["approvers.approver_id"],
            name=op.f("fk_approver_activity_approver_id_approvers"),
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.team_id"], name=op.f("fk_approver_activity_team_id_teams")
        ),
        sa.PrimaryKeyConstraint("team_id", "approver_id", name=op.f("pk_approver_activity")),
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("approver_activity")
