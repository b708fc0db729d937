"""Run history: every archive, purge and restore run is recorded here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from ..errors import NotFound
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
    rows_skipped: int = 0
    details: dict[str, Any] | None = None  # {"children": {table: rows}, "skipped": {reference: rows}}


def start_run(kind: str, table_name: str, trigger: str, dry_run: bool = False) -> int:
    """Insert a ``running`` run and commit it at once; returns its id."""
    run = ArchiveRun(kind=kind, table_name=table_name, trigger=trigger[:96], dry_run=dry_run,
                     status=RunStatus.RUNNING.value, started_at=utcnow())
    db.session.add(run)
    db.session.flush()
    run_id = run.id  # read before commit: reading after would reopen a snapshot (SQLite locks)
    db.session.commit()
    return run_id


def finish_run(run_id: int, status: str, counts: RunCounts | None = None, error: str | None = None) -> ArchiveRun:
    """Close a run with its final status, counts and (safe, short) error text."""
    run = db.session.get(ArchiveRun, run_id)
    if run is None:  # pragma: no cover - the row was committed by start_run
        raise NotFound(f"run {run_id} not found")
    run.status = status
    run.finished_at = utcnow()
    if counts is not None:
        run.rows_read = counts.rows_read
        run.rows_written = counts.rows_written
        run.rows_deleted = counts.rows_deleted
        run.rows_conflict = counts.rows_conflict
        run.batches = counts.batches
        run.rows_skipped = counts.rows_skipped
        run.details = counts.details or None
    run.error = (error or None) and error[:2000]
    db.session.commit()
    return run


def trigger_for_user(username: str) -> str:
    return f"api:{username}"


MAX_PAGE_SIZE = 200


def list_runs(*, table_name: str | None = None, kind: str | None = None, status: str | None = None,
              limit: int = 50, before_id: int | None = None) -> tuple[list[ArchiveRun], int | None]:
    """Runs newest first (by id), filtered; keyset-paginated with ``before_id``.

    Returns the page and the ``before_id`` of the next page (None at the end).
    """
    limit = max(1, min(int(limit), MAX_PAGE_SIZE))
    stmt = select(ArchiveRun).order_by(ArchiveRun.id.desc())
    if table_name is not None:
        stmt = stmt.where(ArchiveRun.table_name == table_name)
    if kind is not None:
        stmt = stmt.where(ArchiveRun.kind == kind)
    if status is not None:
        stmt = stmt.where(ArchiveRun.status == status)
    if before_id is not None:
        stmt = stmt.where(ArchiveRun.id < before_id)
    items = list(db.session.execute(stmt.limit(limit + 1)).scalars())
    next_before = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_before


def get_run(run_id: int) -> ArchiveRun | None:
    return db.session.get(ArchiveRun, run_id)


INTERRUPTED_MESSAGE = "interrupted: the runner stopped before finishing (process killed or crashed)"


def close_interrupted(kind: str, table_name: str, current_run_id: int) -> int:
    """Mark earlier non-dry runs of ``table_name``/``kind`` still 'running' as failed.

    Only call while holding the table's lease: then no other runner can be
    working on it, so such runs belong to a runner that died.
    """
    stmt = (update(ArchiveRun)
            .where(ArchiveRun.kind == kind, ArchiveRun.table_name == table_name,
                   ArchiveRun.status == RunStatus.RUNNING.value, ArchiveRun.dry_run.is_(False),
                   ArchiveRun.id != current_run_id)
            .values(status=RunStatus.FAILED.value, error=INTERRUPTED_MESSAGE, finished_at=utcnow()))
    count = db.session.execute(stmt).rowcount
    db.session.commit()
    return count
