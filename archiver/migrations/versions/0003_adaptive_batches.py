"""Adaptive batch sizes: archive_policies.batch_mode, and batch_size may be empty.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

New policies size their batches adaptively (``batch_mode = 'adaptive'``; ``batch_size``, now
nullable, is their ceiling when set). The policies stored before keep exactly what they did:
they become ``fixed`` with their batch_size. Every row is kept.
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("archive_policies") as batch:
        batch.add_column(sa.Column("batch_mode", sa.String(length=16), nullable=False,
                                   server_default=sa.text("'adaptive'")))
        batch.alter_column("batch_size", existing_type=sa.Integer(), nullable=True)
    op.execute("UPDATE archive_policies SET batch_mode = 'fixed'")


def downgrade():
    op.execute("UPDATE archive_policies SET batch_size = 50000 WHERE batch_size IS NULL")
    with op.batch_alter_table("archive_policies") as batch:
        batch.alter_column("batch_size", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("batch_mode")
