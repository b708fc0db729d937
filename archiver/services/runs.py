"""Run history: every archive, purge and restore run is recorded here."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select, update

from ..engine.lease import HOST, Holder
from ..errors import Conflict, NotFound
from ..extensions import db
from ..models import ArchiveRun, RunStatus
from ..models._types import utcnow
from . import monitoring
from .source_db import archive_writes_expected


@dataclass
class RunCounts:
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    rows_conflict: int = 0
    batches: int = 0
    rows_skipped: int = 0
    details: dict[str, Any] | None = None  # {"children": {table: rows}, "skipped": {reference: rows}}
    rate: float | None = None  # rows per second (rows deleted from the source, or purged)


def _runs() -> sa.Table:
    return ArchiveRun.__table__  # type: ignore[return-value]


def record_progress(run_id: int, counts: RunCounts) -> None:
    """Write a running run's counters (after each committed batch). Its own short transaction on
    the archive engine, outside the session: safe from any thread, never waits for source rows."""
    values: dict[str, Any] = {"rows_read": counts.rows_read, "rows_written": counts.rows_written,
                              "rows_deleted": counts.rows_deleted, "batches": counts.batches,
                              "rows_skipped": counts.rows_skipped, "rate": counts.rate, "progress_at": utcnow()}
    if counts.details is not None:  # a throttle's sleeps and pauses so far
        values["details"] = counts.details
    with db.engines[None].begin() as conn:
        conn.execute(sa.update(_runs()).where(_runs().c.id == run_id,
                                              _runs().c.status == RunStatus.RUNNING.value).values(**values))


def record_pause(run_id: int, details: dict[str, Any], *, archive: sa.Engine) -> None:
    """A running run has paused (its throttle): ``details`` (``{"throttle": {..., "paused": why}}``)
    shows it on the run record at once. Its own short transaction on ``archive`` (the archive
    engine, passed in: a pipelined run's throttle waits on a reader thread, outside the app context)."""
    with archive.begin() as conn:
        conn.execute(sa.update(_runs()).where(_runs().c.id == run_id, _runs().c.status == RunStatus.RUNNING.value)
                     .values(details=details, progress_at=utcnow()))


def set_rows_total(run_id: int, rows_total: int) -> None:
    with db.engines[None].begin() as conn:
        conn.execute(sa.update(_runs()).where(_runs().c.id == run_id).values(rows_total=rows_total))


def cancel_requested(run_id: int) -> bool:
    """Whether someone asked (POST /runs/{id}/cancel, from any process) to cancel this run."""
    with db.engines[None].connect() as conn:
        return conn.execute(sa.select(_runs().c.cancel_requested_at).where(_runs().c.id == run_id)).scalar() \
            is not None


def request_cancel(run_id: int, by: str) -> ArchiveRun:
    """Ask a running run to stop after its current batch (it ends ``cancelled``).

    NotFound for an unknown run; Conflict for a run that is over. Asking twice is harmless.
    """
    run = db.session.get(ArchiveRun, run_id)
    if run is None:
        raise NotFound("No run with this id")
    if run.status != RunStatus.RUNNING.value:
        raise Conflict(f"Run {run_id} is {run.status}: only a running run can be cancelled",
                       {"run_id": run_id, "status": run.status}, code="run_not_running")
    if run.cancel_requested_at is None:
        run.cancel_requested_at = utcnow()
        run.cancel_requested_by = by[:96]
    db.session.commit()
    return run


ABANDONED_MESSAGE = ("abandoned: its process ended without recording the end of the run (killed, crashed, or "
                     "the archive database unreachable when it finished)")


def abandon_dead_runs(table_name: str, current_run_id: int | None, dead: Holder | None) -> list[int]:
    """Close runs of ``table_name`` still ``running`` (other than ours, dry runs aside) as ``abandoned``.

    Only call while holding the table's lock: then no other runner works on the table, so such
    runs belong to a process that died. Their counters stay as last written (after their last
    committed batch); ``finished_at`` is when this was detected.
    """
    now = utcnow()
    t = _runs()
    cond = [t.c.table_name == table_name, t.c.status == RunStatus.RUNNING.value, t.c.dry_run.is_(False)]
    if current_run_id is not None:
        cond.append(t.c.id != current_run_id)
    detected = f"detected at {now.isoformat(timespec='seconds')}" + (
        f" by run {current_run_id}" if current_run_id is not None else "")
    with archive_writes_expected(), db.engines[None].begin() as conn:  # reads, then writes
        found = conn.execute(sa.select(t.c.id, t.c.kind).where(*cond)).all()
        ids = [row.id for row in found]
        for run_id in ids:
            who = ""
            if dead is not None and dead.run_id == run_id:
                who = f" (host {dead.host}, pid {dead.pid}, lock held since {dead.since.isoformat(timespec='seconds')})"
            conn.execute(sa.update(t).where(t.c.id == run_id, t.c.status == RunStatus.RUNNING.value).values(
                status=RunStatus.ABANDONED.value, finished_at=now,
                error=f"{ABANDONED_MESSAGE}{who}; {detected}"))
    monitoring.runs_abandoned([row.kind for row in found])
    return ids


def start_run(kind: str, table_name: str, trigger: str, dry_run: bool = False,
              rows_total: int | None = None, status: str = RunStatus.RUNNING.value) -> int:
    """Insert a ``running`` run (this host and process) and commit it at once; returns its id."""
    run = ArchiveRun(kind=kind, table_name=table_name, trigger=trigger[:96], dry_run=dry_run,
                     status=status, started_at=utcnow(), rows_total=rows_total, host=HOST[:255],
                     pid=os.getpid())
    db.session.add(run)
    db.session.flush()
    run_id = run.id  # read before commit: reading after would reopen a snapshot (SQLite locks)
    db.session.commit()
    monitoring.run_started(run_id, kind, table_name, trigger[:96], dry_run)
    return run_id


def finish_run(run_id: int, status: str, counts: RunCounts | None = None, error: str | None = None) -> ArchiveRun:
    """Close a run with its final status, counts and (safe, short) error text.

    It reads the record, then writes it: its transaction begins with write intent, so on SQLite a
    batch committed by another connection in between makes it wait its turn instead of failing
    (the end lost)."""
    with archive_writes_expected():
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
        if counts.rate is not None:
            run.rate = counts.rate
    run.error = (error or None) and error[:2000]
    # What the log line and the metrics need, read before the commit expires the record.
    end = monitoring.RunEnd(run_id=run.id, kind=run.kind, table_name=run.table_name, trigger=run.trigger,
                            status=status, dry_run=run.dry_run, started_at=run.started_at,
                            finished_at=run.finished_at, rows_read=run.rows_read or 0,
                            rows_written=run.rows_written or 0, rows_deleted=run.rows_deleted or 0,
                            rows_skipped=run.rows_skipped or 0, rows_conflict=run.rows_conflict or 0,
                            details=run.details, error=run.error)
    db.session.commit()
    monitoring.run_ended(end)
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
