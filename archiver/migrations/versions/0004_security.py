"""Security: the audit trail, login sessions (token families) and per-user token versions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

* audit_events: one append-only row per audited event (logins, logouts, token reuse, user, grant
  and policy changes, reads and exports of archived rows, restores, runs started or cancelled);
  indexed by time (retention, time filters) and by action, actor and target with the id (keyset
  pages of GET /audit).
* token_families: one row per login session; every token names its family, whose current refresh
  token (refresh_jti) is the only one that may be used, and which logout or a reused refresh token
  revokes. Rows go when their tokens have all expired (expires_at).
* users.token_version: the version every token of the user carries; 0 for every existing user.
  Tokens issued before this revision carry no version or family and are refused after the
  upgrade: everyone logs in again once.

Only tables and a column with a default are added: every archived row, user, policy and run is kept.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def big_int_pk() -> sa.types.TypeEngine:
    """BIGINT, but INTEGER on SQLite so that the key is the rowid (autoincrement), as in 0001."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def details() -> sa.types.TypeEngine:
    """JSONB on PostgreSQL, JSON elsewhere (on MariaDB: LONGTEXT with a json_valid() check), as in 0001."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def stamp() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "audit_events",
        sa.Column("id", big_int_pk(), nullable=False),
        sa.Column("at", stamp(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("details", details(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"], unique=False)
    op.create_index("ix_audit_events_action_id", "audit_events", ["action", "id"], unique=False)
    op.create_index("ix_audit_events_actor_id_id", "audit_events", ["actor_id", "id"], unique=False)
    op.create_index("ix_audit_events_target_id", "audit_events", ["target", "id"], unique=False)

    op.create_table(
        "token_families",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", big_int_pk(), nullable=False),
        sa.Column("refresh_jti", sa.String(length=36), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("refreshed_at", stamp(), nullable=True),
        sa.Column("expires_at", stamp(), nullable=False),
        sa.Column("revoked_at", stamp(), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_token_families_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_families")),
    )
    op.create_index(op.f("ix_token_families_expires_at"), "token_families", ["expires_at"], unique=False)
    op.create_index(op.f("ix_token_families_user_id"), "token_families", ["user_id"], unique=False)

    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("token_version", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
    op.drop_index(op.f("ix_token_families_user_id"), table_name="token_families")
    op.drop_index(op.f("ix_token_families_expires_at"), table_name="token_families")
    op.drop_table("token_families")
    op.drop_index("ix_audit_events_target_id", table_name="audit_events")
    op.drop_index("ix_audit_events_actor_id_id", table_name="audit_events")
    op.drop_index("ix_audit_events_action_id", table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
