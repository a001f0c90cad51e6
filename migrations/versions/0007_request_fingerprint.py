"""request fingerprint: a request_id is bound to the request it first came with

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SHA-256 (hex) of the first request with request_id cleared. Keys stored before this
    # revision have none and replay for any request, as they did.
    op.add_column("idempotency_keys", sa.Column("fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("fingerprint")
