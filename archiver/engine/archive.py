"""Move a table's qualifying rows into ``archived_rows``, batch by batch.

Per batch, in this order (the no-loss invariant):

1. Source transaction: SELECT the next ``batch_size`` qualifying rows after the
   last key seen, in primary-key order, locking them (``FOR UPDATE`` on
   PostgreSQL/MySQL; ``BEGIN IMMEDIATE`` holds SQLite's write lock).
2. Archive transaction: upsert them into ``archived_rows`` keyed by
   (table_name, source_pk) and COMMIT.
3. Still in the source transaction, whose locks kept the rows unchanged since
   step 1: DELETE exactly those keys and COMMIT.

A source row is therefore deleted only after an archived copy equal to its
current values is committed. A crash between 2 and 3 leaves the row in both
places; the next run upserts it again (same values) and deletes it.

How the batches of a run are driven (:class:`_Run`): one after another; or, on a
source whose writers do not block each other and a large enough table, pipelined
over two source connections (:mod:`.pipeline`: the next batch is read while this
one is written, each batch keeping the order above); or, when a MariaDB source and
archive are on one server, pipelined *in-server* moves (:mod:`.in_server`: copy
and delete in one transaction per batch, the rows never leaving the server).
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator

import sqlalchemy as sa

from .dialects import ArchiveOps, SourceOps, archive_ops_for, source_ops_for
from .errors import DatabaseError, EngineError, dbapi_reason
from .in_server import open_in_server_move
from .lease import TableLease
from .pipeline import PipedArchive, PipelinedArchive, open_slots
from .plan import TablePlan, build_plan
from .policy import PolicySpec, as_utc

#: Checkpoint names passed to ``checkpoint`` (tests use them to crash or pause there).
#: An in-server move (one transaction per batch) passes ``after_archive_insert`` (copied,
#: not committed) where the generic protocol passes ``after_archive_commit``.
CHECKPOINTS = ("after_select", "after_archive_commit", "after_archive_insert", "after_source_delete", "after_batch")


@dataclass(frozen=True)
class BatchProgress:
    """Reported to ``on_batch`` after each committed batch."""

    table_name: str
    kind: str
    batch: int
    rows: int
    total_rows: int
    elapsed_seconds: float


@dataclass
class ArchiveResult:
    """What one archive run of one table did.

    ``rows_read`` rows selected and locked, ``rows_archived`` upserted into the
    archive, ``rows_deleted`` deleted from the source. ``stopped`` is True when
    ``should_stop`` ended the run early (committed batches stay committed).
    For a dry run only ``would_archive`` is set.
    """

    table_name: str
    cutoff: datetime
    dry_run: bool = False
    rows_read: int = 0
    rows_archived: int = 0
    rows_deleted: int = 0
    batches: int = 0
    stopped: bool = False
    would_archive: int | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _never() -> bool:
    return False


@contextlib.contextmanager
def db_side(side: str) -> Iterator[None]:
    """Re-raise DB-API errors as DatabaseError naming the side, with a safe reason."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(side, dbapi_reason(exc)) from exc


def same_sqlite_file(a: sa.Engine, b: sa.Engine) -> bool:
    """True when both engines are the same SQLite database file (one writer at a time)."""
    if a.dialect.name != "sqlite" or b.dialect.name != "sqlite":
        return False
    da, db_ = a.url.database, b.url.database
    if not da or not db_ or da == ":memory:" or db_ == ":memory:":
        return False
    return os.path.realpath(da) == os.path.realpath(db_)


def plan_table(source: sa.Engine, spec: PolicySpec, now: datetime, ops: SourceOps | None = None) -> TablePlan:
    """Reflect the source table and compile the policy (no rows touched)."""
    ops = ops or source_ops_for(source)
    with db_side("source"), source.connect() as conn:
        return build_plan(conn, spec, as_utc(now), ops)


def count_archivable(source: sa.Engine, spec: PolicySpec, *, now: datetime) -> tuple[int, datetime]:
    """How many rows would move right now, and the cutoff used."""
    ops = source_ops_for(source)
    plan = plan_table(source, spec, now, ops)
    with db_side("source"), source.connect() as conn:
        return ops.count(conn, plan), plan.cutoff


def archive_table(source: sa.Engine, archive: sa.Engine, spec: PolicySpec, *, now: datetime,
                  run_id: int | None = None, dry_run: bool = False,
                  should_stop: Callable[[], bool] = _never,
                  on_batch: Callable[[BatchProgress], None] | None = None,
                  lease: TableLease | None = None,
                  checkpoint: Callable[[str], None] | None = None,
                  source_ops: SourceOps | None = None, archive_ops: ArchiveOps | None = None,
                  in_server: bool = True, pipeline: bool = True) -> ArchiveResult:
    """Archive ``spec.table_name`` from ``source`` into ``archive`` for the cutoff at ``now``.

    Batches are taken in primary-key order (keyset) until none is left or
    ``should_stop()`` is true (checked between batches). ``lease``, if given,
    is renewed between batches (LeaseLost stops the run). ``checkpoint(name)``
    is called at each point of :data:`CHECKPOINTS`. With ``pipeline`` (default), a source
    whose writers do not block each other overlaps consecutive batches of a large enough
    table (:mod:`.pipeline`; ``result.extra["pipelined"]``), and with ``in_server`` too
    (default), a MariaDB source and archive on one server move those batches inside the
    server (:mod:`.in_server`; ``result.extra["in_server"]``). A batch a pipeline had to
    roll back and move alone counts in ``result.extra["redone"]``. There, ``on_batch`` and
    ``should_stop`` may run while the next batch already holds its row locks (they must not
    wait for source rows), and a stop lets the batches in flight finish. Raises EngineError
    subclasses (safe messages) or CriteriaError; rows of committed batches stay moved.
    """
    started = time.perf_counter()
    now = as_utc(now)
    sops = source_ops or source_ops_for(source)
    aops = archive_ops or archive_ops_for(archive)
    plan = plan_table(source, spec, now, sops)
    result = ArchiveResult(spec.table_name, plan.cutoff, dry_run=dry_run)
    if dry_run:
        with db_side("source"), source.connect() as conn:
            result.would_archive = sops.count(conn, plan)
        result.seconds = time.perf_counter() - started
        return result

    hook = checkpoint or (lambda _name: None)
    shared = same_sqlite_file(source, archive)
    with db_side("source"):
        sconn = sops.connect()
    source_restore = None
    try:
        with db_side("source"):
            source_restore = sops.prepare(sconn)
        with db_side("archive"):
            aconn = sconn if shared else archive.connect()
            restore = None if shared else aops.prepare(aconn)
        try:
            run = _Run(sops, aops, plan, sconn, aconn, shared, result, now, run_id, hook,
                       should_stop, on_batch, lease, started)
            run.move(archive, in_server=in_server, pipeline=pipeline)
        finally:
            if not shared:
                try:
                    if restore is not None:
                        restore()
                finally:
                    aconn.close()
    finally:
        try:
            if source_restore is not None:
                source_restore()
        finally:
            sconn.close()
    result.extra.pop("last_key", None)
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Run:
    """One archive run's batches: picks how they move and keeps the result's counts."""

    sops: SourceOps
    aops: ArchiveOps
    plan: TablePlan
    sconn: sa.Connection
    aconn: sa.Connection
    shared: bool
    result: ArchiveResult
    now: datetime
    run_id: int | None
    hook: Callable[[str], None]
    should_stop: Callable[[], bool]
    on_batch: Callable[[BatchProgress], None] | None
    lease: TableLease | None
    started: float

    def move(self, archive: sa.Engine, *, in_server: bool, pipeline: bool) -> None:
        """In-server (MariaDB, one server), pipelined (sources with row locks, large tables), or
        one batch after another."""
        with db_side("source"):
            overlap = pipeline and not self.shared and self.sops.pipelines_for(self.plan, self.sconn)
            mover = open_in_server_move(self.sops, self.plan, self.sconn, self.aconn, archive, now=self.now,
                                        run_id=self.run_id, checkpoint=self.hook) if overlap and in_server else None
        if mover is not None:
            self.result.extra["in_server"] = True
            try:
                mover.run(self.stop_requested, self.redo_batch, self.counted)
            finally:
                mover.close()
        elif overlap:
            self.result.extra["pipelined"] = True
            with db_side("source"):
                slots, close_slots = open_slots(self.sops, self.sconn)
            try:
                streams = _streams(self.sops, self.aops)
                if streams and PipedArchive.usable(self.sops, self.aops, self.plan, self.aconn, self.now):
                    self.result.extra["piped"] = True
                    pipeline_: PipedArchive | PipelinedArchive = PipedArchive(
                        self.sops, self.aops, self.plan, slots, self.aconn, now=self.now, run_id=self.run_id,
                        hook=self.hook)
                else:
                    pipeline_ = PipelinedArchive(self.sops, self.aops, self.plan, slots, self.aconn, now=self.now,
                                                 run_id=self.run_id, hook=self.hook, streams=streams)
                pipeline_.run(self.stop_requested, self.redo_batch, self.counted)
            finally:
                close_slots()
        else:
            after: tuple | None = None
            while not self.stop_requested():
                after = self.generic_batch(after)
                if after is None:
                    break

    def stop_requested(self) -> bool:
        """Checked between batches: a stop request, or a lost lease (raises LeaseLost)."""
        if self.should_stop():
            self.result.stopped = True
            return True
        if self.lease is not None:
            with db_side("archive"):
                self.lease.renew_if_due()
        return False

    def committed(self, n: int) -> None:
        self.hook("after_batch")
        if self.on_batch is not None:
            self.on_batch(BatchProgress(self.plan.table_name, "archive", self.result.batches, n,
                                        self.result.rows_deleted, time.perf_counter() - self.started))

    def generic_batch(self, after: tuple | None) -> tuple | None:
        """One batch by the generic protocol; its last key (None: nothing left)."""
        n = _one_batch(self.sops, self.aops, self.plan, self.sconn, self.aconn, self.shared, after, self.now,
                       self.run_id, self.result, self.hook)
        if n == 0:
            return None
        self.committed(n)
        return self.result.extra["last_key"]

    def redo_batch(self, after: tuple | None) -> tuple | None:
        """A batch a pipeline rolled back, moved the generic way (counted in extra["redone"])."""
        self.result.extra["redone"] = self.result.extra.get("redone", 0) + 1
        return self.generic_batch(after)

    def counted(self, n_read: int, n_deleted: int) -> None:
        """A batch a pipeline committed."""
        self.result.rows_read += n_read
        self.result.rows_archived += n_read
        self.result.rows_deleted += n_deleted
        self.result.batches += 1
        self.committed(n_read)


def _streams(sops: SourceOps, aops: ArchiveOps) -> bool:
    """True when a batch streams from the source SELECT into the archive (see _one_batch)."""
    return bool(aops.streams and getattr(sops, "streaming", False) and getattr(sops, "fast_enabled", False))


def _one_batch(sops: SourceOps, aops: ArchiveOps, plan: TablePlan, sconn: sa.Connection, aconn: sa.Connection,
               shared: bool, after: tuple | None, now: datetime, run_id: int | None,
               result: ArchiveResult, hook: Callable[[str], None]) -> int:
    """Select+lock, upsert+commit archive, delete+commit source. Returns rows moved (0: done).

    When both sides support it, the batch's rows stream from the source
    SELECT into the archive upsert (the databases work at the same time); the
    order of commits is the same: archive first, then the source DELETE.
    """
    limit = plan.spec.batch_size
    with db_side("source"), sconn.begin():
        stream = sops.stream_batch(sconn, plan, after, limit) if aops.streams and not shared else None
        if stream is not None:
            if not stream:
                return 0
            hook("after_select")  # the first rows are read and locked; the rest as they stream
            with db_side("archive"), aconn.begin():
                written = aops.upsert_stream(aconn, plan.table_name, stream.chunks(), now, run_id)
                batch = stream.finish()
                if written != len(batch):  # never delete a row whose copy is not in this commit
                    raise EngineError(f"archive upsert of '{plan.table_name}' took {written} of {len(batch)} rows")
            result.rows_read += len(batch)
        else:
            batch = sops.fetch_batch(sconn, plan, after, limit)
            if not batch:
                return 0
            result.rows_read += len(batch)
            hook("after_select")
            with db_side("archive"):
                if shared:  # one SQLite file: archive and delete commit together, atomically
                    aops.upsert(aconn, plan.table_name, batch.records, now, run_id)
                else:
                    with aconn.begin():
                        aops.upsert(aconn, plan.table_name, batch.records, now, run_id)
        result.rows_archived += len(batch)
        hook("after_archive_commit")
        deleted = sops.delete_keys(sconn, plan, batch.keys)
        hook("after_source_delete")
    result.rows_deleted += deleted
    result.batches += 1
    result.extra["last_key"] = batch.last_key
    return len(batch)


__all__ = ["ArchiveResult", "BatchProgress", "CHECKPOINTS", "archive_table", "count_archivable", "plan_table"]
