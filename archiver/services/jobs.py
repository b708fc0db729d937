"""Archive and purge jobs over the policies: leases, run records, failure isolation.

``run_archive`` / ``run_purge`` process each enabled policy's table (or one
table) in turn. Per table they record a run (start_run/finish_run), take the
table's lease in the archive database (a table whose lease another runner
holds is recorded as ``skipped`` with error "locked by another runner"), call
the engine, and turn any failure into a ``failed`` run with a short, safe
error, then go on with the next table. Needs an app context.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from flask import current_app

from ..engine.archive import BatchProgress, archive_table, preview_archive
from ..engine.criteria import CriteriaError
from ..engine.errors import EngineError
from ..engine.failures import db_side, describe_error
from ..engine.lease import TableLease
from ..engine.policy import PolicySpec, utcnow
from ..engine.purge import purge_table
from ..errors import NotFound
from ..extensions import db
from ..models import ArchivePolicy, RunKind, RunStatus
from . import runs
from .policies import policy_spec
from .source_db import archive_engine, source_engine

log = logging.getLogger(__name__)

LOCKED_MESSAGE = "locked by another runner"
STOPPED_MESSAGE = "stopped on request before the end; committed batches stay committed"


class UnknownPolicy(NotFound):
    """No policy (or no enabled policy) for the requested table."""


@dataclass
class TableOutcome:
    """One table's result within a job: its run record's status and counts."""

    table_name: str
    kind: str
    status: str
    run_id: int | None = None
    dry_run: bool = False
    rows: int = 0  # rows moved (archive), deleted (purge), or that would be (dry run)
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    batches: int = 0
    seconds: float = 0.0
    cutoff: datetime | None = None
    error: str | None = None
    in_server: bool = False  # moved inside one MariaDB server (engine/in_server.py)
    pipelined: bool = False  # batches overlapped (engine/pipeline.py)
    redone: int = 0          # batches a pipeline rolled back and moved again alone
    rows_skipped: int = 0    # rows left in place: a row that stays still references them
    children: dict[str, int] = field(default_factory=dict)  # rows that moved with them, by table
    skipped: dict[str, int] = field(default_factory=dict)   # rows held back, by reference

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class JobReport:
    """All tables of one archive or purge job."""

    kind: str
    dry_run: bool = False
    outcomes: list[TableOutcome] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list[TableOutcome]:
        return [o for o in self.outcomes if o.status == RunStatus.FAILED.value]

    @property
    def total_rows(self) -> int:
        return sum(o.rows for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return not self.failed


def _specs(table: str | None) -> list[PolicySpec]:
    stmt = sa.select(ArchivePolicy).order_by(ArchivePolicy.table_name)
    if table is not None:
        stmt = stmt.where(ArchivePolicy.table_name == table)
    policies = list(db.session.execute(stmt).scalars())
    if table is not None:
        if not policies:
            raise UnknownPolicy(f"no policy for table '{table}'")
        if not policies[0].enabled:
            raise UnknownPolicy(f"the policy for table '{table}' is disabled")
    specs = [policy_spec(p) for p in policies if p.enabled]
    db.session.rollback()  # end the read transaction before the engine writes (SQLite)
    return specs


def fault_checkpoint() -> Callable[[str], None] | None:
    """Test-only crash hook: ``ARCHIVER_FAULT_POINT=<checkpoint>[:<n>]`` SIGKILLs this process
    the n-th time the engine reaches that checkpoint. Read only when ARCHIVER_ENV is testing."""
    if current_app.config.get("ENV_NAME") != "testing" or os.environ.get("ARCHIVER_ENV") != "testing":
        return None
    spec = os.environ.get("ARCHIVER_FAULT_POINT", "").strip()
    if not spec:
        return None
    point, _, nth_text = spec.partition(":")
    nth = int(nth_text) if nth_text.isdigit() else 1
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] >= nth:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _lease(table_name: str, kind: str) -> TableLease:
    return TableLease(archive_engine(), table_name, kind=kind,
                      ttl_seconds=current_app.config["LEASE_TTL_SECONDS"])


def _never() -> bool:
    return False


def run_archive(table: str | None = None, *, trigger: str, dry_run: bool = False,
                should_stop: Callable[[], bool] | None = None,
                on_batch: Callable[[BatchProgress], None] | None = None,
                now: datetime | None = None) -> JobReport:
    """Archive every enabled policy's table (or only ``table``); one run record per table.

    Raises UnknownPolicy when ``table`` has no enabled policy.
    """
    return _run_job(RunKind.ARCHIVE.value, table, trigger=trigger, dry_run=dry_run,
                    should_stop=should_stop or _never, on_batch=on_batch, now=now)


def run_purge(table: str | None = None, *, trigger: str, dry_run: bool = False,
              should_stop: Callable[[], bool] | None = None,
              on_batch: Callable[[BatchProgress], None] | None = None,
              now: datetime | None = None) -> JobReport:
    """Purge expired archived rows of every enabled policy's table (or only ``table``)."""
    return _run_job(RunKind.PURGE.value, table, trigger=trigger, dry_run=dry_run,
                    should_stop=should_stop or _never, on_batch=on_batch, now=now)


def _run_job(kind: str, table: str | None, *, trigger: str, dry_run: bool, should_stop: Callable[[], bool],
             on_batch: Callable[[BatchProgress], None] | None, now: datetime | None) -> JobReport:
    started = time.perf_counter()
    report = JobReport(kind=kind, dry_run=dry_run)
    for spec in _specs(table):
        if should_stop():
            report.stopped = True
            break
        outcome = _run_table(kind, spec, trigger=trigger, dry_run=dry_run, should_stop=should_stop,
                             on_batch=on_batch, now=now or utcnow())
        report.outcomes.append(outcome)
        if outcome.status == RunStatus.PARTIAL.value and should_stop():
            report.stopped = True
            break
    report.seconds = time.perf_counter() - started
    return report


def _run_table(kind: str, spec: PolicySpec, *, trigger: str, dry_run: bool, should_stop: Callable[[], bool],
               on_batch: Callable[[BatchProgress], None] | None, now: datetime) -> TableOutcome:
    """One table: run record, lease, engine call; never raises for a table-level failure."""
    t0 = time.perf_counter()
    outcome = TableOutcome(spec.table_name, kind, RunStatus.RUNNING.value, dry_run=dry_run)
    progress: dict[str, int] = {"rows": 0, "batches": 0}

    def track(p: BatchProgress) -> None:
        progress["rows"], progress["batches"] = p.total_rows, p.batch
        if on_batch is not None:
            on_batch(p)

    lease: TableLease | None = None
    try:
        outcome.run_id = runs.start_run(kind, spec.table_name, trigger, dry_run=dry_run)
        db.session.rollback()  # no open snapshot while the engine writes to the archive (SQLite)
        if not dry_run:
            lease = _lease(spec.table_name, kind)
            with db_side("archive"):
                got = lease.acquire()
            if not got:
                outcome.status, outcome.error = RunStatus.SKIPPED.value, LOCKED_MESSAGE
                log.info("%s of %s skipped: %s", kind, spec.table_name, LOCKED_MESSAGE)
                return _finish(outcome, t0)
            runs.close_interrupted(kind, spec.table_name, outcome.run_id)
        if kind == RunKind.ARCHIVE.value:
            result = archive_table(source_engine(), archive_engine(), spec, now=now, run_id=outcome.run_id,
                                   dry_run=dry_run, should_stop=should_stop, on_batch=track, lease=lease,
                                   checkpoint=fault_checkpoint(),
                                   in_server=current_app.config["IN_SERVER_MOVES"])
            outcome.cutoff = result.cutoff
            outcome.children, outcome.skipped = result.children, result.skipped
            if dry_run:
                outcome.rows = outcome.rows_read = result.would_archive or 0
            else:
                outcome.rows_skipped = result.rows_skipped
                outcome.rows = outcome.rows_deleted = result.rows_deleted
                outcome.rows_read, outcome.rows_written = result.rows_read, result.rows_archived
                outcome.batches = result.batches
                outcome.in_server = bool(result.extra.get("in_server"))
                outcome.pipelined = bool(result.extra.get("pipelined"))
                outcome.redone = int(result.extra.get("redone", 0))
        else:
            presult = purge_table(archive_engine(), spec, now=now, dry_run=dry_run, should_stop=should_stop,
                                  on_batch=track, lease=lease)
            outcome.cutoff = presult.cutoff
            if dry_run:
                outcome.rows = outcome.rows_read = presult.would_purge or 0
            else:
                outcome.rows = outcome.rows_deleted = presult.rows_deleted
                outcome.batches = presult.batches
            result = presult
        if result.stopped:
            outcome.status, outcome.error = RunStatus.PARTIAL.value, STOPPED_MESSAGE
        else:
            outcome.status = RunStatus.SUCCEEDED.value
    except Exception as exc:  # noqa: BLE001 - one table's failure must not stop the others
        side = "archive" if kind == RunKind.PURGE.value else None
        outcome.status, outcome.error = RunStatus.FAILED.value, describe_error(exc, side)
        if not isinstance(exc, (EngineError, CriteriaError)):
            log.error("%s of %s failed", kind, spec.table_name, exc_info=exc)
        else:
            log.warning("%s of %s failed: %s", kind, spec.table_name, outcome.error)
        # Whatever committed before the failure (from the progress callback).
        if kind == RunKind.ARCHIVE.value:
            outcome.rows = outcome.rows_deleted = outcome.rows_written = outcome.rows_read = progress["rows"]
        else:
            outcome.rows = outcome.rows_deleted = progress["rows"]
        outcome.batches = progress["batches"]
    finally:
        if lease is not None and lease.held:
            try:
                lease.release()
            except Exception:  # noqa: BLE001 - it expires on its own
                log.warning("could not release the %s lease on %s", kind, spec.table_name)
    return _finish(outcome, t0)


def _finish(outcome: TableOutcome, t0: float) -> TableOutcome:
    outcome.seconds = time.perf_counter() - t0
    if outcome.run_id is None:
        return outcome
    details = {k: v for k, v in (("children", outcome.children), ("skipped", outcome.skipped)) if v}
    counts = runs.RunCounts(rows_read=outcome.rows_read, rows_written=outcome.rows_written,
                            rows_deleted=outcome.rows_deleted, batches=outcome.batches,
                            rows_skipped=outcome.rows_skipped, details=details or None)
    try:
        db.session.rollback()
        runs.finish_run(outcome.run_id, outcome.status, counts, outcome.error)
    except Exception:  # noqa: BLE001 - the archive database itself failed; the run stays 'running'
        db.session.rollback()
        log.exception("could not record the end of run %s", outcome.run_id)
    return outcome


def preview(table_name: str, *, now: datetime | None = None) -> dict[str, Any]:
    """What an archive run of ``table_name`` would move now (moves nothing): the rows that qualify,
    the rows of child tables that would move with them, and the references that hold rows back.

    Raises NotFound without a policy; the engine's errors go through as they
    are (the policy no longer fits the source table, the source database fails).
    """
    policy = db.session.execute(
        sa.select(ArchivePolicy).where(ArchivePolicy.table_name == table_name)).scalar_one_or_none()
    if policy is None:
        raise NotFound(f"No policy for table {table_name}")
    spec = policy_spec(policy)
    enabled = policy.enabled
    db.session.rollback()
    found = preview_archive(source_engine(), spec, now=now or utcnow())
    return {"table_name": spec.table_name, "would_archive": found.would_archive, "cutoff": found.cutoff,
            "date_column": spec.date_column, "archive_after_days": spec.archive_after_days,
            "custom_criteria": spec.custom_criteria, "batch_size": spec.batch_size, "enabled": enabled,
            "moves_with": found.moves_with, "held_by": found.held_by}
