"""Run control: table locks that die with their holder, live progress and cancel on runs, scheduler checks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

* table_locks (new): who holds each table's lock (host, pid, run id, kind, since, heartbeat). On
  PostgreSQL and MariaDB the lock itself is an advisory lock of the holder's session; on SQLite
  this row is the lock (engine/lease.py).
* table_leases (dropped): the expiring per-(table, kind) leases it replaces. A lease row is no
  data: at most one in-flight run's claim, which dies with the old version's process. Dropping
  the table also stops a runner of the old version that is still going on at its next renewal,
  so it cannot work beside a runner of this version.
* archive_runs: rows_total, rate, progress_at (live progress and ETA), host, pid (who runs it),
  cancel_requested_at, cancel_requested_by (POST /runs/{id}/cancel). NULL for the runs recorded
  before.
* schedule_checks (new): the scheduler's last look at each table and kind (a tick that moves
  nothing records no run).

Every archived row, policy, user and run is kept as it is.
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def stamp() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "table_locks",
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", stamp(), nullable=False),
        sa.Column("heartbeat_at", stamp(), nullable=False),
        sa.PrimaryKeyConstraint("table_name"),
    )
    op.drop_table("table_leases")
    with op.batch_alter_table("archive_runs") as batch:
        batch.add_column(sa.Column("rows_total", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("rate", sa.Float(), nullable=True))
        batch.add_column(sa.Column("progress_at", stamp(), nullable=True))
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", stamp(), nullable=True))
        batch.add_column(sa.Column("cancel_requested_by", sa.String(length=96), nullable=True))
    op.create_table(
        "schedule_checks",
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("checked_at", stamp(), nullable=False),
        sa.Column("outcome", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("table_name", "kind", name=op.f("pk_schedule_checks")),
    )


def downgrade():
    op.drop_table("schedule_checks")
    with op.batch_alter_table("archive_runs") as batch:
        for column in ("cancel_requested_by", "cancel_requested_at", "pid", "host", "progress_at", "rate",
                       "rows_total"):
            batch.drop_column(column)
    op.create_table(
        "table_leases",
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", stamp(), nullable=False),
        sa.Column("expires_at", stamp(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "kind"),
    )
    op.drop_table("table_locks")
