"""work estimates and carbon objects: tokens a pending request may take, for the
planner; a request's carbon object as JSON; a batch's requests indexed in id order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 17:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("est_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("carbon", sa.Text(), nullable=True))
        batch_op.drop_index("ix_requests_batch_id")
        batch_op.create_index("ix_requests_batch_id", ["batch_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_batch_id")
        batch_op.create_index("ix_requests_batch_id", ["batch_id"], unique=False)
        batch_op.drop_column("carbon")
        batch_op.drop_column("est_tokens")
