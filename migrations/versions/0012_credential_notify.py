"""a NOTIFY for every changed credential row (issue 11): replicas cache verified credentials
and drop one when the database announces its change (revocation, expiry moved, deletion)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 21:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite has one server process, which drops what it revokes itself.
    if op.get_bind().dialect.name != "postgresql":
        return
    # Delivered at commit, to every listening connection: also for a change made by SQL
    # behind the server's back, which the cache would otherwise keep serving.
    op.execute(
        "CREATE FUNCTION airlock_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('airlock_credentials', OLD.credential_id); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER credentials_changed AFTER UPDATE OR DELETE ON credentials "
        "FOR EACH ROW EXECUTE FUNCTION airlock_credential_changed()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER credentials_changed ON credentials")
    op.execute("DROP FUNCTION airlock_credential_changed()")
