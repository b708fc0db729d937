"""Throttles per policy: sleeps, run budgets, replica lag and load limits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

archive_policies gets sleep_ms, sleep_ratio, max_run_seconds, max_rows_per_run,
max_replica_lag_seconds, max_active_sessions and critical_active_sessions, all NULL: every stored
policy takes the service's THROTTLE_* defaults, which are off unless set - so the policies run
exactly as before. Every row is kept.
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = (
    ("sleep_ms", sa.Integer()),
    ("sleep_ratio", sa.Double()),
    ("max_run_seconds", sa.Integer()),
    ("max_rows_per_run", sa.BigInteger()),
    ("max_replica_lag_seconds", sa.Double()),
    ("max_active_sessions", sa.Integer()),
    ("critical_active_sessions", sa.Integer()),
)


def upgrade():
    with op.batch_alter_table("archive_policies") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade():
    with op.batch_alter_table("archive_policies") as batch:
        for name, _type in reversed(COLUMNS):
            batch.drop_column(name)
