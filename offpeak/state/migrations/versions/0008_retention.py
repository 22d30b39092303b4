"""retention: when the garbage collector removed a request's body and result, a batch's
results and a file's bytes (the rows stay); the retention a caller set on an OpenAI
batch's output (`output_expires_after`) or on an uploaded file (`expires_after`)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 04:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.Integer(), nullable=True))
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.Integer(), nullable=True))
    with op.batch_alter_table("openai_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("openai_files", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("retention_seconds")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
