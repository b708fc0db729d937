"""Baseline: the archive schema as create_all made it before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

users, table_permissions, archive_policies, archive_runs (the ORM models, archiver/models/) and
archived_rows, table_leases (the engine's Core tables, archiver/engine/schema.py), with the same
per-dialect types create_all gives them. The types are spelled out here rather than imported, so
that this revision keeps creating exactly this schema when the models move on.

init-db stamps a database made by that create_all at this revision instead of running it; run
directly over such a database, it refuses instead of failing half-way.
"""
from alembic import context, op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("users", "table_permissions", "archive_policies", "archive_runs", "archived_rows", "table_leases")


def big_int_pk() -> sa.types.TypeEngine:
    """BIGINT, but INTEGER on SQLite so that the key is the rowid (autoincrement)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def exact_text(length: int) -> sa.types.TypeEngine:
    """VARCHAR compared byte for byte: utf8mb4_bin on MySQL/MariaDB (their default collation is
    case-insensitive)."""
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(binary, "mysql").with_variant(binary, "mariadb")


def payload() -> sa.types.TypeEngine:
    """JSONB on PostgreSQL, JSON elsewhere (on MariaDB: LONGTEXT with a json_valid() check)."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def stamp() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def _refuse_existing_tables() -> None:
    if context.is_offline_mode():
        return
    present = sorted(set(TABLES) & set(sa.inspect(op.get_bind()).get_table_names()))
    if present:
        raise RuntimeError(
            f"revision 0001 creates the archive schema, but {', '.join(present)} already exist: a database "
            "made before migrations. Run `flask --app archiver init-db`, which recognises it and stamps it "
            "at 0001 without touching its rows.")


def upgrade():
    _refuse_existing_tables()

    op.create_table(
        "users",
        sa.Column("id", big_int_pk(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("updated_at", stamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "table_permissions",
        sa.Column("id", big_int_pk(), nullable=False),
        sa.Column("user_id", big_int_pk(), nullable=False),
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_table_permissions")),
        sa.UniqueConstraint("user_id", "table_name", name=op.f("uq_table_permissions_user_id")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_table_permissions_user_id_users"),
                                ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_table_permissions_user_id"), "table_permissions", ["user_id"], unique=False)

    op.create_table(
        "archive_policies",
        sa.Column("id", big_int_pk(), nullable=False),
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("date_column", sa.String(length=255), nullable=False),
        sa.Column("archive_after_days", sa.Integer(), nullable=False),
        sa.Column("delete_after_days", sa.Integer(), nullable=False),
        sa.Column("custom_criteria", sa.Text(), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("updated_at", stamp(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_policies")),
        sa.UniqueConstraint("table_name", name=op.f("uq_archive_policies_table_name")),
    )

    op.create_table(
        "archive_runs",
        sa.Column("id", big_int_pk(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("trigger", sa.String(length=96), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("started_at", stamp(), nullable=False),
        sa.Column("finished_at", stamp(), nullable=True),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_written", sa.BigInteger(), nullable=False),
        sa.Column("rows_deleted", sa.BigInteger(), nullable=False),
        sa.Column("rows_conflict", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_runs")),
    )
    op.create_index(op.f("ix_archive_runs_kind"), "archive_runs", ["kind"], unique=False)
    op.create_index(op.f("ix_archive_runs_status"), "archive_runs", ["status"], unique=False)
    op.create_index("ix_archive_runs_table_started", "archive_runs", ["table_name", "started_at"], unique=False)

    # The engine's tables (their MetaData has no naming convention: the server names the primary keys).
    op.create_table(
        "archived_rows",
        sa.Column("id", big_int_pk(), autoincrement=True, nullable=False),
        sa.Column("table_name", exact_text(255), nullable=False),
        sa.Column("source_pk", exact_text(512), nullable=False),
        sa.Column("payload", payload(), nullable=False),
        sa.Column("row_date", stamp(), nullable=True),
        sa.Column("archived_at", stamp(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("table_name", "source_pk", name="uq_archived_rows_table_pk"),
    )
    op.create_index("ix_archived_rows_table_archived_at", "archived_rows", ["table_name", "archived_at"],
                    unique=False)
    op.create_index("ix_archived_rows_table_id", "archived_rows", ["table_name", "id"], unique=False)
    op.create_index("ix_archived_rows_table_row_date", "archived_rows", ["table_name", "row_date"], unique=False)

    op.create_table(
        "table_leases",
        sa.Column("table_name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", stamp(), nullable=False),
        sa.Column("expires_at", stamp(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "kind"),
    )


def downgrade():
    # Dropping the baseline drops every archived row: downgrade to "base" only a database you mean to empty.
    for table in reversed(TABLES):
        op.drop_table(table)
