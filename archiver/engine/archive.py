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
                  in_server: bool = True) -> ArchiveResult:
    """Archive ``spec.table_name`` from ``source`` into ``archive`` for the cutoff at ``now``.

    Batches are taken in primary-key order (keyset) until none is left or
    ``should_stop()`` is true (checked between batches). ``lease``, if given,
    is renewed between batches (LeaseLost stops the run). ``checkpoint(name)``
    is called at each point of :data:`CHECKPOINTS`. With ``in_server`` (default), a
    MariaDB source and archive on one server move rows inside the server when they can
    (:mod:`.in_server`; ``result.extra["in_server"]`` is then True). Raises EngineError
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
            def stop_requested() -> bool:
                if should_stop():
                    result.stopped = True
                    return True
                if lease is not None:
                    with db_side("archive"):
                        lease.renew_if_due()
                return False

            def committed(n: int) -> None:
                hook("after_batch")
                if on_batch is not None:
                    on_batch(BatchProgress(spec.table_name, "archive", result.batches, n, result.rows_deleted,
                                           time.perf_counter() - started))

            def generic_batch(after: tuple | None) -> tuple | None:
                n = _one_batch(sops, aops, plan, sconn, aconn, shared, after, now, run_id, result, hook)
                if n == 0:
                    return None
                committed(n)
                return result.extra["last_key"]

            mover = None
            if in_server and not shared:
                with db_side("source"):
                    mover = open_in_server_move(sops, plan, sconn, aconn, archive, now=now, run_id=run_id,
                                                checkpoint=hook)
            if mover is not None:
                result.extra["in_server"] = True

                def in_server_committed(n: int) -> None:
                    result.rows_read += n
                    result.rows_archived += n
                    result.rows_deleted += n
                    result.batches += 1
                    committed(n)

                try:
                    mover.run(None, stop_requested, generic_batch, in_server_committed)
                finally:
                    mover.close()
            else:
                after: tuple | None = None
                while not stop_requested():
                    after = generic_batch(after)
                    if after is None:
                        break
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
