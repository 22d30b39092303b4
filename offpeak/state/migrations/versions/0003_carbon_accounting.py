"""carbon accounting

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 15:25:25.697465
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("energy_kwh", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("intensity", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("gco2e", sa.Float(), nullable=True))

    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gco2e", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("baseline_gco2e", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("carbon_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ran_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("ran_at")
        batch_op.drop_column("carbon_zone")
        batch_op.drop_column("baseline_gco2e")
        batch_op.drop_column("gco2e")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("gco2e")
        batch_op.drop_column("intensity")
        batch_op.drop_column("energy_kwh")
        batch_op.drop_column("zone")
        batch_op.drop_column("pool")
