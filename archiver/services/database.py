"""Create the archive schema and check that both databases answer."""
from __future__ import annotations

import sqlalchemy as sa

from ..engine import schema as engine_schema
from ..extensions import db


def init_db() -> None:
    """Create every archive-database table that does not exist yet (idempotent)."""
    db.create_all(bind_key=None)
    engine_schema.metadata.create_all(db.engines[None])


def ping(bind_key: str | None) -> None:
    """Raise if the database behind ``bind_key`` does not answer ``SELECT 1``."""
    with db.engines[bind_key].connect() as conn:
        conn.execute(sa.text("SELECT 1"))
