"""Run history: every archive, purge and restore run is recorded here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..extensions import db
from ..models import ArchiveRun, RunStatus
from ..models._types import utcnow


@dataclass
class RunCounts:
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    rows_conflict: int = 0
    batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def start_run(kind: str, table_name: str, trigger: str, dry_run: bool = False) -> int:
    """Insert a ``running`` run and commit it at once; returns its id."""
    run = ArchiveRun(kind=kind, table_name=table_name, trigger=trigger[:96], dry_run=dry_run,
                     status=RunStatus.RUNNING.value, started_at=utcnow())
    db.session.add(run)
    db.session.commit()
    return run.id


def finish_run(run_id: int, status: str, counts: RunCounts | None = None, error: str | None = None) -> ArchiveRun:
    """Close a run with its final status, counts and (safe, short) error text."""
    run = db.session.get(ArchiveRun, run_id)
    if run is None:  # pragma: no cover - the row was committed by start_run
        raise LookupError(f"run {run_id} not found")
    run.status = status
    run.finished_at = utcnow()
    if counts is not None:
        run.rows_read = counts.rows_read
        run.rows_written = counts.rows_written
        run.rows_deleted = counts.rows_deleted
        run.rows_conflict = counts.rows_conflict
        run.batches = counts.batches
    run.error = (error or None) and error[:2000]
    db.session.commit()
    return run


def trigger_for_user(username: str) -> str:
    return f"api:{username}"
