from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import BigIntPK, utcnow


class RunKind(str, enum.Enum):
    ARCHIVE = "archive"
    PURGE = "purge"
    RESTORE = "restore"


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"  # some rows left in place (restore conflicts; a run its throttle's budget ended)
    SKIPPED = "skipped"  # another run held the table's lock; nothing was done
    CANCELLED = "cancelled"  # stopped between batches by POST /runs/{id}/cancel
    INTERRUPTED = "interrupted"  # stopped between batches by SIGTERM/SIGINT (service or CLI shutdown)
    ABANDONED = "abandoned"  # its process died mid-run; found by the next run that took the table's lock


#: Statuses of a run that is over.
FINAL_STATUSES = frozenset(s.value for s in RunStatus if s is not RunStatus.RUNNING)


class ArchiveRun(db.Model):
    """One archive, purge or restore run over one table.

    Counts: ``rows_read`` rows selected, ``rows_written`` rows written to the
    target (archive for archive runs, source for restore), ``rows_deleted`` rows
    deleted (source rows for archive, archived rows for purge/restore),
    ``rows_conflict`` rows left in place because of a key conflict.
    """

    __tablename__ = "archive_runs"
    __table_args__ = (Index("ix_archive_runs_table_started", "table_name", "started_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    table_name: Mapped[str] = mapped_column(String(255), nullable=False)
    trigger: Mapped[str] = mapped_column(String(96), nullable=False)  # scheduler | cli | api:<username>
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=RunStatus.RUNNING.value, index=True)
    dry_run: Mapped[bool] = mapped_column(default=False, nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rows_read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_written: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_deleted: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_conflict: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    batches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Rows left in the source because a row that stays still references them (their objects stay).
    rows_skipped: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default=text("0"))
    # {"children": {table: rows}, "skipped": {reference: rows}} for tables with child tables or referrers.
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # Live progress (written after every committed batch): rows that qualified when the run started
    # (for the ETA), the current rate and when the counters were last written.
    rows_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Who runs it (host and process id), and a cancel request (POST /runs/{id}/cancel) it honours
    # between batches, from any process.
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(96), nullable=True)


class ScheduleCheck(db.Model):
    """The last time the scheduler looked at a table for a kind of run.

    A scheduler tick that finds nothing to move (or the table held by another
    run) records no run: it updates this row instead.
    """

    __tablename__ = "schedule_checks"

    table_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(255), nullable=False)
    run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the run it started, if any
