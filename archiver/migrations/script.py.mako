"""${message}

Review before committing (README "Schema migrations"): every archived row must survive the upgrade
(a rename autogenerates as drop + add: write alter_column / batch operations instead); spell out
per-dialect types as 0001_baseline.py does (JSONB on PostgreSQL, utf8mb4_bin on MySQL/MariaDB,
INTEGER keys on SQLite); autogenerate compares neither collations nor server defaults here, and never
sees a change of data.

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
