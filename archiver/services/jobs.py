"""Archive and purge jobs over the policies: table locks, run records, live progress, stops.

``run_archive`` / ``run_purge`` process each enabled policy's table (or one
table) in turn, in the calling thread (the CLI, the scheduler). Per table they
take the table's lock (:class:`~archiver.engine.lease.TableLock`; archive,
purge and restore of a table share it), record a run, close as ``abandoned``
any run of the table whose process died, count what qualifies (the ETA's
denominator), call the engine, write the counters after every committed batch,
and turn any failure into a ``failed`` run with one safe line naming the
database, then go on with the next table. A table held by another run is
``skipped`` (CLI: recorded, with who holds it) or, for the scheduler, only
noted in ``schedule_checks`` - as is a scheduled check that finds nothing to
move: scheduler ticks add a run record only when they move something.

:func:`start_background` (``POST /runs``) claims a table in the request and
runs it in a thread of the serving process; :func:`request_cancel` stops a run
after its current batch (``cancelled``), from any process; :func:`shutdown`
(SIGTERM to the service) stops every run of this process after its current
batch (``interrupted``) and waits for them within a bound. Needs an app context.
"""
from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from flask import Flask, current_app

from ..engine.archive import BatchProgress, archive_table, count_and_plan, count_archivable, preview_archive
from ..engine.criteria import CriteriaError
from ..engine.errors import DatabaseError, EngineError, LeaseLost
from ..engine.backends import explain
from ..engine.failures import db_side, describe_error, real_cause
from ..engine.lease import Holder, TableLock
from ..engine.policy import PolicySpec, utcnow
from ..engine.purge import purge_table
from ..engine.sizing import SizingSettings
from ..engine.throttle import Throttle
from ..errors import NotFound, Unavailable
from ..extensions import db
from ..models import ArchivePolicy, ArchiveRun, RunKind, RunStatus, ScheduleCheck
from . import monitoring, runs
from .locks import TableHeld, table_lock
from .policies import policy_spec
from .source_db import archive_engine, archive_writes_expected, source_engine
from .throttles import check_seconds, run_throttle, throttle_defaults

log = logging.getLogger(__name__)

LOCKED_MESSAGE = "locked by another runner"
INTERRUPTED_MESSAGE = "interrupted by a stop signal after a committed batch; committed batches stay committed"
CANCELLED_MESSAGE = "cancelled on request after a committed batch; committed batches stay committed"
NOTHING_TO_MOVE = "nothing to move"

#: ``on_start(table_name, kind, rows_total)``: a table's run starts; rows_total qualified.
OnStart = Callable[[str, str, int], None]
#: ``on_pause(table_name, why)``: a run's throttle pauses it ("paused: replica lag 4.2 s > 2 s").
OnPause = Callable[[str, str], None]


#: Set by :func:`shutdown` (SIGTERM to the serving process): every run of this process stops after
#: its current batch and ends ``interrupted``; no new run starts.
SHUTDOWN = threading.Event()


@dataclass
class _Active:
    """A run going on in this process (any thread): how to cancel it at once."""

    run_id: int
    table_name: str
    kind: str
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)


_active: dict[int, _Active] = {}
_active_lock = threading.Lock()


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
    in_server: bool = False  # moved inside the database (a backend's in_server module)
    pipelined: bool = False  # batches overlapped (engine/pipeline.py)
    redone: int = 0          # batches a pipeline rolled back and moved again alone
    rows_skipped: int = 0    # rows left in place: a row that stays still references them
    rows_total: int | None = None  # rows that qualified at the start
    holder: Holder | None = None   # status skipped: the run that held the table
    rate: float = 0.0              # recent rows per second
    children: dict[str, int] = field(default_factory=dict)  # rows that moved with them, by table
    skipped: dict[str, int] = field(default_factory=dict)   # rows held back, by reference
    batch_sizes: dict[str, Any] | None = None  # how the batches were sized (engine/sizing.py summary)
    throttle: dict[str, Any] | None = None  # sleeps and pauses (engine/throttle.py summary)
    passes: int | None = None  # passes over the table, when rows held by their own table made more than one
    critical_load: bool = False  # partial: its throttle stopped it on the source's critical load

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
    def held(self) -> list[TableOutcome]:
        """Tables another run held (not run)."""
        return [o for o in self.outcomes if o.status == RunStatus.SKIPPED.value]

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
    enabled = [p for p in policies if p.enabled]
    defaults = throttle_defaults() if enabled else {}
    specs = [policy_spec(p, defaults, check_seconds()) for p in enabled]
    db.session.rollback()  # end the read transaction before the engine writes (SQLite)
    return specs


def sizing_settings() -> SizingSettings:
    """The adaptive batch bounds of this app (BATCH_TARGET_MS, BATCH_MAX_ROWS, BATCH_MAX_MB)."""
    cfg = current_app.config
    return SizingSettings(target_seconds=cfg["BATCH_TARGET_MS"] / 1000, max_rows=cfg["BATCH_MAX_ROWS"],
                          max_bytes=cfg["BATCH_MAX_MB"] << 20)


def fault_checkpoint() -> Callable[[str], None] | None:
    """Test-only hook, read only when ARCHIVER_ENV is testing: ``ARCHIVER_FAULT_POINT=<checkpoint>[:<n>]``
    SIGKILLs this process the n-th time the engine reaches that checkpoint;
    ``<checkpoint>[:<n>]:sleep=<seconds>`` sleeps there instead, from the n-th time on (a slow source)."""
    if current_app.config.get("ENV_NAME") != "testing" or os.environ.get("ARCHIVER_ENV") != "testing":
        return None
    spec = os.environ.get("ARCHIVER_FAULT_POINT", "").strip()
    if not spec:
        return None
    parts = spec.split(":")
    point = parts[0]
    nth = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1
    sleep = next((float(p[6:]) for p in parts[1:] if p.startswith("sleep=")), None)
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] >= nth:
                if sleep is not None:
                    time.sleep(sleep)
                else:
                    os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _never() -> bool:
    return False


@dataclass
class Claim:
    """A table claimed for one run: its run record and (not for a dry run) the table's lock."""

    kind: str
    spec: PolicySpec
    trigger: str
    dry_run: bool
    run_id: int
    lock: TableLock | None


def claim_table(kind: str, spec: PolicySpec, *, trigger: str, dry_run: bool = False) -> Claim:
    """Take the table's lock (not for a dry run), record a ``running`` run and close the runs of the
    table whose process died as ``abandoned``. Raises TableHeld when another run holds the table."""
    if SHUTDOWN.is_set():
        raise Unavailable("The service is shutting down; no new run starts")
    lock: TableLock | None = None
    if not dry_run:
        lock = table_lock(spec.table_name)
        with db_side("archive"):
            got = lock.acquire(kind)
        if not got:
            raise TableHeld(spec.table_name, lock.blocker)
    try:
        run_id = runs.start_run(kind, spec.table_name, trigger, dry_run=dry_run)
        db.session.rollback()  # no open snapshot while the engine writes to the archive (SQLite)
        if lock is not None:
            lock.attach(run_id)
            dead = runs.abandon_dead_runs(spec.table_name, run_id, lock.taken_over)
            if dead:
                log.warning("%s of %s: closed run(s) %s as abandoned (their process died%s)", kind,
                            spec.table_name, ", ".join(map(str, dead)),
                            f"; lock held by {lock.taken_over.describe()}" if lock.taken_over else "")
    except BaseException:
        if lock is not None:
            _release(lock, kind, spec.table_name)
        raise
    return Claim(kind, spec, trigger, dry_run, run_id, lock)


def _release(lock: TableLock, kind: str, table_name: str) -> None:
    try:
        lock.release()
    except Exception:  # noqa: BLE001 - it dies with this process (advisory) or goes stale (lease)
        log.warning("could not release the lock on %s after a %s run", table_name, kind)


def run_archive(table: str | None = None, *, trigger: str, dry_run: bool = False,
                should_stop: Callable[[], bool] | None = None,
                on_batch: Callable[[BatchProgress], None] | None = None,
                now: datetime | None = None, on_start: OnStart | None = None,
                on_pause: OnPause | None = None) -> JobReport:
    """Archive every enabled policy's table (or only ``table``); one run record per table run.

    Raises UnknownPolicy when ``table`` has no enabled policy.
    """
    return _run_job(RunKind.ARCHIVE.value, table, trigger=trigger, dry_run=dry_run,
                    should_stop=should_stop or _never, on_batch=on_batch, now=now, on_start=on_start,
                    on_pause=on_pause)


def run_purge(table: str | None = None, *, trigger: str, dry_run: bool = False,
              should_stop: Callable[[], bool] | None = None,
              on_batch: Callable[[BatchProgress], None] | None = None,
              now: datetime | None = None, on_start: OnStart | None = None) -> JobReport:
    """Purge expired archived rows of every enabled policy's table (or only ``table``)."""
    return _run_job(RunKind.PURGE.value, table, trigger=trigger, dry_run=dry_run,
                    should_stop=should_stop or _never, on_batch=on_batch, now=now, on_start=on_start)


def _stopping(should_stop: Callable[[], bool]) -> bool:
    return SHUTDOWN.is_set() or should_stop()


def _run_job(kind: str, table: str | None, *, trigger: str, dry_run: bool, should_stop: Callable[[], bool],
             on_batch: Callable[[BatchProgress], None] | None, now: datetime | None,
             on_start: OnStart | None = None, on_pause: OnPause | None = None) -> JobReport:
    started = time.perf_counter()
    report = JobReport(kind=kind, dry_run=dry_run)
    scheduled = trigger == "scheduler"
    for spec in _specs(table):
        if _stopping(should_stop):
            report.stopped = True
            break
        at = now or utcnow()
        if scheduled and not dry_run and _nothing_to_do(kind, spec, at):
            continue
        t0 = time.perf_counter()
        try:
            claim = claim_table(kind, spec, trigger=trigger, dry_run=dry_run)
        except TableHeld as exc:
            if scheduled:
                _note_check(kind, spec.table_name, f"held by {exc.holder.describe() if exc.holder else 'another run'}")
                continue
            report.outcomes.append(_held(kind, spec, trigger, exc, t0))
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. the archive database is down: this table fails
            outcome = TableOutcome(spec.table_name, kind, RunStatus.FAILED.value, dry_run=dry_run,
                                   error=describe_error(exc, "archive"))
            log.warning("%s of %s could not start: %s", kind, spec.table_name, outcome.error)
            monitoring.run_not_started(kind, spec.table_name)
            outcome.seconds = time.perf_counter() - t0
            report.outcomes.append(outcome)
            continue
        if scheduled:
            _note_check(kind, spec.table_name, "run started", claim.run_id)
        outcome = execute(claim, should_stop=should_stop, on_batch=on_batch, now=at, on_start=on_start,
                          on_pause=on_pause)
        report.outcomes.append(outcome)
        if outcome.status in (RunStatus.INTERRUPTED.value, RunStatus.CANCELLED.value) and _stopping(should_stop):
            report.stopped = True
            break
    report.seconds = time.perf_counter() - started
    return report


def _held(kind: str, spec: PolicySpec, trigger: str, exc: TableHeld, t0: float) -> TableOutcome:
    """A manual run refused because another run holds the table: recorded as ``skipped``."""
    outcome = TableOutcome(spec.table_name, kind, RunStatus.SKIPPED.value, holder=exc.holder,
                           error=f"{LOCKED_MESSAGE}: {exc.message}")
    log.info("%s of %s skipped: %s", kind, spec.table_name, exc.message)
    try:
        outcome.run_id = runs.start_run(kind, spec.table_name, trigger)
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the refusal is reported anyway
        db.session.rollback()
    return _finish(outcome, t0)


def _nothing_to_do(kind: str, spec: PolicySpec, now: datetime) -> bool:
    """Scheduler: True (and noted in schedule_checks) when no row qualifies right now.

    A failure to count is not decided here: the run goes ahead and records it.
    """
    try:
        if kind == RunKind.ARCHIVE.value:
            n, _ = count_archivable(source_engine(), spec, now=now)
        else:
            n = purge_table(archive_engine(), spec, now=now, dry_run=True).would_purge or 0
    except Exception:  # noqa: BLE001 - recorded by the run that follows
        return False
    if n:
        return False
    _note_check(kind, spec.table_name, NOTHING_TO_MOVE)
    return True


def _note_check(kind: str, table_name: str, outcome: str, run_id: int | None = None) -> None:
    """Keep the time and result of the scheduler's last look at a table (no run record)."""
    try:
        with archive_writes_expected():  # reads, then writes: the transaction begins with the write lock (SQLite)
            row = db.session.get(ScheduleCheck, (table_name, kind))
        if row is None:
            row = ScheduleCheck(table_name=table_name, kind=kind)
            db.session.add(row)
        row.checked_at, row.outcome = utcnow(), outcome[:255]
        row.run_id = run_id if run_id is not None else row.run_id
        db.session.commit()
    except Exception:  # noqa: BLE001 - bookkeeping only
        db.session.rollback()
        log.warning("could not note the scheduler's check of %s", table_name)


class _RunStop:
    """``should_stop`` for one run: a stop signal (interrupted) or a cancel request (cancelled).

    A cancel request is seen at once in this process (the active run's event) and within
    ``poll`` seconds from another process (the run record's cancel_requested_at).
    """

    def __init__(self, run_id: int, interrupt: Callable[[], bool], cancel: threading.Event,
                 poll: float = 1.0) -> None:
        self.run_id, self.interrupt, self.cancel, self.poll = run_id, interrupt, cancel, poll
        self.reason: str | None = None
        self._polled = time.monotonic()

    def __call__(self) -> bool:
        if self.reason is not None:
            return True
        if SHUTDOWN.is_set() or self.interrupt():
            self.reason = RunStatus.INTERRUPTED.value
        elif self.cancel.is_set():
            self.reason = RunStatus.CANCELLED.value
        elif time.monotonic() - self._polled >= self.poll:
            self._polled = time.monotonic()
            try:
                if runs.cancel_requested(self.run_id):
                    self.reason = RunStatus.CANCELLED.value
            except Exception:  # noqa: BLE001 - the archive database hiccups: the batch loop will say so
                pass
        return self.reason is not None


class _Progress:
    """Counts of the batches committed so far, written to the run record after each one."""

    def __init__(self, run_id: int | None, kind: str, on_batch: Callable[[BatchProgress], None] | None,
                 record: bool) -> None:
        self.run_id, self.kind, self.on_batch, self.record = run_id, kind, on_batch, record
        self.rows = self.batches = self.rows_read = self.rows_archived = self.rows_skipped = 0
        self.window: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self.window.append((time.monotonic(), 0))
        self.throttle: Throttle | None = None  # its sleeps and pauses go on the record with the counts

    def rate(self) -> float:
        (t0, r0), (t1, r1) = self.window[0], self.window[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0

    def __call__(self, p: BatchProgress) -> None:
        self.rows, self.batches = p.total_rows, p.batch
        self.rows_read = p.rows_read or p.total_rows
        self.rows_archived = p.rows_archived or p.total_rows
        self.rows_skipped = p.rows_skipped
        self.window.append((time.monotonic(), p.total_rows))
        if self.record and self.run_id is not None:
            try:
                runs.record_progress(self.run_id, self.counts())
            except sa.exc.DBAPIError as exc:
                # The archive does not take the counters: the next batch's archive write would fail
                # the same way (after as long a wait). Stop here; the committed batches stay.
                raise DatabaseError("archive", explain(exc)) from exc
        if self.on_batch is not None:
            self.on_batch(p)

    def throttle_summary(self) -> dict[str, Any]:
        """The run's sleeps and pauses so far (empty: none, or no throttle)."""
        return self.throttle.summary() if self.throttle is not None else {}

    def counts(self) -> runs.RunCounts:
        archive = self.kind == RunKind.ARCHIVE.value
        summary = self.throttle_summary()
        return runs.RunCounts(rows_read=self.rows_read if archive else 0,
                              rows_written=self.rows_archived if archive else 0, rows_deleted=self.rows,
                              batches=self.batches, rows_skipped=self.rows_skipped, rate=round(self.rate(), 3),
                              details={"throttle": summary} if summary else None)


class _Pause:
    """A run's throttle paused it: the log, the run record (``details.throttle.paused``, until the
    next batch's counters replace it) and the caller (the CLI's "paused: ..." line) hear of it."""

    def __init__(self, run_id: int, table_name: str, on_pause: OnPause | None, progress: _Progress) -> None:
        self.run_id, self.table_name, self.on_pause, self.progress = run_id, table_name, on_pause, progress
        self.archive = archive_engine()  # called on the run's reader thread too: no app context there

    def __call__(self, why: str) -> None:
        log.info("run %s of %s %s", self.run_id, self.table_name, why,
                 extra={"run_id": self.run_id, "table": self.table_name, "event": "run.paused"})
        try:
            paused = {**self.progress.throttle_summary(), "paused": why.removeprefix("paused: ")}
            runs.record_pause(self.run_id, {"throttle": paused}, archive=self.archive)
        except sa.exc.DBAPIError:
            log.warning("could not note the pause of run %s on its record", self.run_id)
        if self.on_pause is not None:
            self.on_pause(self.table_name, why)


def active_runs() -> list[int]:
    """Ids of the runs going on in this process."""
    with _active_lock:
        return sorted(_active)


def execute(claim: Claim, *, should_stop: Callable[[], bool] | None = None,
            on_batch: Callable[[BatchProgress], None] | None = None, now: datetime | None = None,
            on_start: OnStart | None = None, on_pause: OnPause | None = None) -> TableOutcome:
    """Run a claimed table to its end, release its lock and close its run record; never raises
    for a table-level failure (the outcome says ``failed`` and why). An archive run's throttle
    (policy fields over THROTTLE_* defaults) spaces, pauses or ends it: each pause is logged,
    shown on the run record at once and told to ``on_pause``."""
    kind, spec, dry_run = claim.kind, claim.spec, claim.dry_run
    now = now or utcnow()
    t0 = time.perf_counter()
    outcome = TableOutcome(spec.table_name, kind, RunStatus.RUNNING.value, dry_run=dry_run, run_id=claim.run_id)
    active = _Active(claim.run_id, spec.table_name, kind, threading.current_thread())
    with _active_lock:
        _active[claim.run_id] = active
    try:
        return _execute(claim, active, outcome, t0, now, should_stop=should_stop, on_batch=on_batch,
                        on_start=on_start, on_pause=on_pause)
    finally:
        # Only once its end is recorded: shutdown() waits for the runs in _active.
        with _active_lock:
            _active.pop(claim.run_id, None)


def _execute(claim: Claim, active: "_Active", outcome: TableOutcome, t0: float, now: datetime, *,
             should_stop: Callable[[], bool] | None, on_batch: Callable[[BatchProgress], None] | None,
             on_start: OnStart | None, on_pause: OnPause | None) -> TableOutcome:
    kind, spec, dry_run = claim.kind, claim.spec, claim.dry_run
    stop = _RunStop(claim.run_id, should_stop or _never, active.cancel)
    progress = _Progress(claim.run_id, kind, on_batch, record=not dry_run)
    lock = claim.lock
    archive_down = False
    try:
        if kind == RunKind.ARCHIVE.value:
            plan = None
            if not dry_run:  # the policy checked here is the one the run then uses (not checked twice)
                outcome.rows_total, plan = count_and_plan(source_engine(), spec, now=now)
                runs.set_rows_total(claim.run_id, outcome.rows_total)
                if on_start is not None:
                    on_start(spec.table_name, kind, outcome.rows_total)
            throttle = None if dry_run else run_throttle(spec, on_pause=_Pause(claim.run_id, spec.table_name,
                                                                                on_pause, progress))
            progress.throttle = throttle
            result = archive_table(source_engine(), archive_engine(), spec, now=now, run_id=claim.run_id,
                                   dry_run=dry_run, should_stop=stop, on_batch=progress, lease=lock,
                                   checkpoint=fault_checkpoint(),
                                   in_server=current_app.config["IN_SERVER_MOVES"], sizing=sizing_settings(),
                                   throttle=throttle, plan=plan)
            outcome.cutoff = result.cutoff
            outcome.throttle = result.extra.get("throttle")
            outcome.batch_sizes = result.extra.get("batch_sizes")
            outcome.passes = result.extra.get("passes")
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
            if not dry_run:
                with db_side("archive"):
                    outcome.rows_total = purge_table(archive_engine(), spec, now=now, dry_run=True).would_purge
                runs.set_rows_total(claim.run_id, outcome.rows_total or 0)
                if on_start is not None:
                    on_start(spec.table_name, kind, outcome.rows_total or 0)
            presult = purge_table(archive_engine(), spec, now=now, dry_run=dry_run, should_stop=stop,
                                  on_batch=progress, lease=lock, sizing=sizing_settings())
            outcome.cutoff = presult.cutoff
            if dry_run:
                outcome.rows = outcome.rows_read = presult.would_purge or 0
            else:
                outcome.rows = outcome.rows_deleted = presult.rows_deleted
                outcome.batches = presult.batches
            result = presult
        own_reason = result.stop_reason
        if result.stopped and stop.reason == RunStatus.CANCELLED.value:
            outcome.status, outcome.error = RunStatus.CANCELLED.value, CANCELLED_MESSAGE
        elif result.stopped and stop.reason is None and own_reason:
            # The run ended early on its own (a time or row budget, critical load): rows are left.
            outcome.status, outcome.error = RunStatus.PARTIAL.value, f"stopped early: {own_reason}"
            outcome.critical_load = result.stopped_on_critical_load
        elif result.stopped:
            outcome.status, outcome.error = RunStatus.INTERRUPTED.value, INTERRUPTED_MESSAGE
        else:
            outcome.status = RunStatus.SUCCEEDED.value
    except Exception as exc:  # noqa: BLE001 - one table's failure must not stop the others
        side = "archive" if kind == RunKind.PURGE.value else None
        outcome.status, outcome.error = RunStatus.FAILED.value, describe_error(exc, side)
        cause = real_cause(exc)
        archive_down = (isinstance(cause, (DatabaseError, LeaseLost)) and getattr(cause, "side", None) == "archive") \
            or (side == "archive" and isinstance(cause, sa.exc.DBAPIError))
        if isinstance(exc, (EngineError, CriteriaError, sa.exc.DBAPIError)):
            log.warning("%s of %s failed: %s", kind, spec.table_name, outcome.error)
        else:
            log.error("%s of %s failed", kind, spec.table_name, exc_info=exc)
        # Whatever committed before the failure (from the progress callback).
        outcome.rows = outcome.rows_deleted = progress.rows
        if kind == RunKind.ARCHIVE.value:
            outcome.rows_read, outcome.rows_written = progress.rows_read, progress.rows_archived
            outcome.rows_skipped = progress.rows_skipped
        outcome.batches = progress.batches
        outcome.throttle = progress.throttle_summary() or None
    finally:
        if archive_down:
            # Do not wait on the failed archive's connections again: drop the lock's connection (the
            # server ends its session) and the pooled ones; the run record gets one fresh try.
            if lock is not None:
                lock.drop()
            archive_engine().dispose()
        elif lock is not None and lock.held:
            _release(lock, kind, spec.table_name)
    outcome.rate = progress.rate()
    return _finish(outcome, t0)


def _finish(outcome: TableOutcome, t0: float) -> TableOutcome:
    outcome.seconds = time.perf_counter() - t0
    if outcome.run_id is None:
        return outcome
    details: dict[str, Any] = {k: v for k, v in (("children", outcome.children), ("skipped", outcome.skipped),
                                                 ("batch_sizes", outcome.batch_sizes), ("throttle", outcome.throttle),
                                                 ("passes", outcome.passes))
                               if v}
    if outcome.holder is not None:
        details["held_by"] = outcome.holder.as_dict()
    rate = outcome.rows / outcome.seconds if outcome.seconds > 0 and outcome.status != RunStatus.SKIPPED.value else None
    counts = runs.RunCounts(rows_read=outcome.rows_read, rows_written=outcome.rows_written,
                            rows_deleted=outcome.rows_deleted, batches=outcome.batches,
                            rows_skipped=outcome.rows_skipped, details=details or None,
                            rate=round(rate, 3) if rate is not None else None)
    try:
        db.session.rollback()
        runs.finish_run(outcome.run_id, outcome.status, counts, outcome.error)
    except Exception:  # noqa: BLE001 - the archive database itself failed; the run stays 'running'
        db.session.rollback()
        log.error("could not record the end of run %s (%s): the archive database failed", outcome.run_id,
                  outcome.status)
    return outcome


# --- runs over the API -----------------------------------------------------------

def _one_spec(table_name: str) -> PolicySpec:
    (spec,) = _specs(table_name)
    return spec


def start_background(kind: str, table_name: str, *, dry_run: bool, trigger: str) -> int:
    """Claim ``table_name`` now (TableHeld if another run holds it, UnknownPolicy without an
    enabled policy) and run it in a thread of this process; returns the run id at once."""
    spec = _one_spec(table_name)
    claim = claim_table(kind, spec, trigger=trigger, dry_run=dry_run)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    started = threading.Event()
    thread = threading.Thread(target=_background, args=(app, claim, started), daemon=True,
                              name=f"run-{claim.run_id}-{kind}-{table_name}"[:60])
    thread.start()
    started.wait(timeout=5)  # registered as active (cancel and shutdown see it)
    return claim.run_id


def _background(app: Flask, claim: Claim, started: threading.Event) -> None:
    with app.app_context():
        try:
            with _active_lock:
                _active[claim.run_id] = _Active(claim.run_id, claim.spec.table_name, claim.kind,
                                                threading.current_thread())
            started.set()
            execute(claim)
        except Exception:  # noqa: BLE001 - execute records failures itself; this is a last resort
            log.exception("background run %s failed", claim.run_id)
        finally:
            started.set()
            db.session.remove()


def request_cancel(run_id: int, by: str) -> ArchiveRun:
    """Ask run ``run_id`` to stop after its current batch (``cancelled``): at once when it runs in
    this process, within about a second from another process (the run record carries the request)."""
    run = runs.request_cancel(run_id, by)
    with _active_lock:
        active = _active.get(run_id)
    if active is not None:
        active.cancel.set()
    return run


def shutdown(timeout: float) -> list[int]:
    """Stop every run of this process after its current batch (``interrupted``) and wait for them
    for at most ``timeout`` seconds; returns the ids of the runs still going on."""
    SHUTDOWN.set()
    deadline = time.monotonic() + timeout
    while True:
        with _active_lock:
            threads = [(a.run_id, a.thread) for a in _active.values()]
        pending = [(i, t) for i, t in threads if t.is_alive() and t is not threading.current_thread()]
        if not pending or time.monotonic() >= deadline:
            return [i for i, _ in pending]
        pending[0][1].join(timeout=min(0.2, max(0.0, deadline - time.monotonic())))


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
