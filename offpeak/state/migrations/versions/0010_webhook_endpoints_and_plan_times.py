"""webhook endpoints a key registers for all its events, and the expected start and
completion times of pending work from the scheduler's latest plan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 06:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("key_id", sa.String(length=24), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_endpoints_key_id", ["key_id", "id"], unique=False)

    op.create_table(
        "planned_times",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("expires_minute", sa.Integer(), nullable=False),
        sa.Column("expected_start_at", sa.Integer(), nullable=False),
        sa.Column("expected_completion_at", sa.Integer(), nullable=True),
        sa.Column("planned_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model", "expires_minute"),
    )


def downgrade() -> None:
    op.drop_table("planned_times")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_endpoints_key_id")
    op.drop_table("webhook_endpoints")
