"""jobs and results

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:44:24.967605
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("manifest_key", sa.Text(), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("launched_at", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.Integer(), nullable=True),
        sa.Column("ended_at", sa.Integer(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status", ["status"], unique=False)

    # Costs of single requests are fractions of a cent: keep 8 decimals of balance.
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "credits_usd",
            existing_type=sa.Numeric(precision=16, scale=6),
            type_=sa.Numeric(precision=18, scale=8),
            existing_nullable=False,
        )

    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("result_key", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("prompt_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("completion_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cost_usd", sa.Numeric(precision=16, scale=8), nullable=True))
        batch_op.create_index("ix_requests_job_id", ["job_id"], unique=False)
        batch_op.create_foreign_key("fk_requests_job_id", "jobs", ["job_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_constraint("fk_requests_job_id", type_="foreignkey")
        batch_op.drop_index("ix_requests_job_id")
        batch_op.drop_column("cost_usd")
        batch_op.drop_column("completion_tokens")
        batch_op.drop_column("prompt_tokens")
        batch_op.drop_column("result_key")
        batch_op.drop_column("job_id")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status")

    op.drop_table("jobs")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "credits_usd",
            existing_type=sa.Numeric(precision=18, scale=8),
            type_=sa.Numeric(precision=16, scale=6),
            existing_nullable=False,
        )
