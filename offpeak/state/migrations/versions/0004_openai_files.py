"""openai files and batches

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:05:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "openai_files",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("key_id", sa.String(length=24), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("openai_files", schema=None) as batch_op:
        batch_op.create_index("ix_openai_files_key_id", ["key_id", "id"], unique=False)

    op.create_table(
        "openai_batches",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("key_id", sa.String(length=24), nullable=False),
        sa.Column("input_file_id", sa.String(length=24), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("completion_window", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("output_file_id", sa.String(length=24), nullable=True),
        sa.Column("error_file_id", sa.String(length=24), nullable=True),
        sa.Column("cancelling_at", sa.Integer(), nullable=True),
        sa.Column("finalizing_at", sa.Integer(), nullable=True),
        sa.Column("ended_at", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["id"], ["batches.id"]),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("openai_batches", schema=None) as batch_op:
        batch_op.create_index("ix_openai_batches_key_id", ["key_id", "id"], unique=False)
        batch_op.create_index(
            "ix_openai_batches_open",
            ["id"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("openai_batches", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_openai_batches_open",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index("ix_openai_batches_key_id")
    op.drop_table("openai_batches")
    with op.batch_alter_table("openai_files", schema=None) as batch_op:
        batch_op.drop_index("ix_openai_files_key_id")
    op.drop_table("openai_files")
