"""Relational archiving: rows that move with a parent row, policies that name child tables, skipped rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

* archived_rows.root_id / depth: a row archived with a parent row links to the archived row of its
  object's root and says how far below it; NULL / 0 for every row archived before (each moved by
  its own table's policy). Indexed where set (a partial index on PostgreSQL and SQLite).
* archive_policies.children: the child tables a policy names (JSON), NULL for none.
* archive_runs.rows_skipped / details: rows left in place because a row that stays references them,
  and what moved with the rows and what held them (JSON); 0 / NULL for the runs recorded before.

Only columns are added: every archived row, policy and run is kept as it is.
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("archived_rows") as batch:
        batch.add_column(sa.Column("root_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("depth", sa.SmallInteger(), nullable=False, server_default=sa.text("0")))
    op.create_index("ix_archived_rows_root_id", "archived_rows", ["root_id"], unique=False,
                    postgresql_where=sa.text("root_id IS NOT NULL"), sqlite_where=sa.text("root_id IS NOT NULL"))
    with op.batch_alter_table("archive_policies") as batch:
        batch.add_column(sa.Column("children", sa.JSON(), nullable=True))
    with op.batch_alter_table("archive_runs") as batch:
        batch.add_column(sa.Column("rows_skipped", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("archive_runs") as batch:
        batch.drop_column("details")
        batch.drop_column("rows_skipped")
    with op.batch_alter_table("archive_policies") as batch:
        batch.drop_column("children")
    op.drop_index("ix_archived_rows_root_id", table_name="archived_rows")
    with op.batch_alter_table("archived_rows") as batch:
        batch.drop_column("depth")
        batch.drop_column("root_id")
