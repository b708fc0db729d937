"""Column helpers shared by the models."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Integer

# BIGINT primary keys that still autoincrement on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# The largest id a BigIntPK holds: a larger number names no row (and SQLite cannot even bind it).
MAX_ID = 2**63 - 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
