"""indexes for a million requests: the scheduler's pending work by model and deadline
(replacing the index on status and model), and retention's scans of ended requests and
of who still holds each segment and chunk file

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

REGISTERED = sa.text("status = 'registered'")
ENDED = sa.text("ended_at IS NOT NULL AND purged_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_status")
        batch_op.create_index(
            "ix_requests_pending",
            ["model", "expires_at", "id"],
            unique=False,
            sqlite_where=REGISTERED,
            postgresql_where=REGISTERED,
        )
        batch_op.create_index(
            "ix_requests_ended", ["id"], unique=False, sqlite_where=ENDED, postgresql_where=ENDED
        )
        # Only rows that hold such an object: unsealed rows add no segment entry, rows
        # without a result (claimed, cancelled) no result entry.
        for column in ("segment", "result_key"):
            held = sa.text(f"{column} IS NOT NULL AND purged_at IS NULL")
            batch_op.create_index(
                f"ix_requests_{column}",
                [column, "id"],
                unique=False,
                sqlite_where=held,
                postgresql_where=held,
            )


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        for name in ("result_key", "segment", "ended", "pending"):
            batch_op.drop_index(f"ix_requests_{name}")
        batch_op.create_index("ix_requests_status", ["status", "model"], unique=False)
