"""signed log and authenticated rows: every append signs its head with the log key (kept on
the transaction's last event and on the head row), and the rows the server decides with
(credentials, team versions and members, sessions, votes, grants, vaults) carry a MAC keyed from it
(docs/threat-model.md)

Rows and events written before this revision carry none: a server with a log key refuses them
(RECORD_NOT_AUTHENTIC, LOG_NOT_AUTHENTIC) until `airlock-server seal` vouches for them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The tables whose rows carry a MAC by the log key (persistence/mappers.py says what
# each MAC covers; the repositories compute and check it).
MACED = (
    "credentials",
    "team_versions",
    "team_members",
    "sessions",
    "votes",
    "restore_access_grants",
    "vaults",
)


def upgrade() -> None:
    op.add_column("events", sa.Column("head_signature", sa.LargeBinary(64), nullable=True))
    op.add_column("log_head", sa.Column("signature", sa.LargeBinary(64), nullable=True))
    for table in MACED:
        op.add_column(table, sa.Column("mac", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    # DROP COLUMN, not a batch copy: a copy of events or log_head would lose its triggers.
    for table in reversed(MACED):
        op.drop_column(table, "mac")
    op.drop_column("log_head", "signature")
    op.drop_column("events", "head_signature")
