from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Double, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import BigIntPK, utcnow


class ArchivePolicy(db.Model):
    """How one source table is archived and how long its archive is kept."""

    __tablename__ = "archive_policies"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    table_name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    date_column: Mapped[str] = mapped_column(String(255), nullable=False, default="created_at")
    archive_after_days: Mapped[int] = mapped_column(Integer, nullable=False)
    delete_after_days: Mapped[int] = mapped_column(Integer, nullable=False)
    custom_criteria: Mapped[str | None] = mapped_column(Text, nullable=True)
    # adaptive: batch_size (when set) is the largest batch; fixed: every batch is batch_size rows.
    batch_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow,
                                                 onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Child tables the policy names (moved with their parent rows like ON DELETE CASCADE children):
    # [{"table", "columns", "references", "parent"?}, ...]; NULL: none. (Columns added by a migration
    # come last: create_all makes the same table the migrations make.)
    children: Mapped[list | None] = mapped_column(JSON, nullable=True)
    batch_mode: Mapped[str] = mapped_column(String(16), nullable=False, default="adaptive",
                                            server_default=text("'adaptive'"))
    # Throttles (engine/throttle.py; docs/operations.md): NULL takes the THROTTLE_* default of the
    # service, 0 turns the limit off for this policy.
    sleep_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sleep_ratio: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_run_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rows_per_run: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_replica_lag_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_active_sessions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    critical_active_sessions: Mapped[int | None] = mapped_column(Integer, nullable=True)
