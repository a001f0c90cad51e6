"""event log guards: the genesis head row, and triggers that refuse UPDATE and DELETE

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARDED = ("events", "event_subjects", "log_head")
APPEND_ONLY = ("events", "event_subjects")


def upgrade() -> None:
    log_head = sa.table(
        "log_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    op.bulk_insert(log_head, [{"id": 1, "seq": 0, "hash": bytes(32)}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION airlock_refuse_log_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'the event log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION airlock_refuse_log_change()"
            )
        for table in GUARDED:
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION airlock_refuse_log_change()"
            )
        op.execute(
            "CREATE TRIGGER log_head_no_delete BEFORE DELETE ON log_head "
            "FOR EACH ROW EXECUTE FUNCTION airlock_refuse_log_change()"
        )
    else:
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the event log is append-only: {verb} on "
                    f"{table} refused'); END"
                )
        op.execute(
            "CREATE TRIGGER log_head_no_delete BEFORE DELETE ON log_head "
            "BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE on log_head "
            "refused'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        for table in GUARDED:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER log_head_no_delete ON log_head")
        op.execute("DROP FUNCTION airlock_refuse_log_change()")
    else:
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_no_{verb}")
        op.execute("DROP TRIGGER log_head_no_delete")
    op.execute("DELETE FROM log_head")
