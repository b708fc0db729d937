"""The batch protocol, once: select and lock → archive upsert and commit → source delete and commit.

Per batch, in this order (the no-loss invariant):

1. :meth:`Protocol.read` — source transaction: SELECT the next ``batch_size``
   qualifying rows after the last key seen, in primary-key order, locking them
   (``FOR UPDATE`` where the database has row locks; ``BEGIN IMMEDIATE`` holds
   SQLite's write lock).
2. :meth:`Protocol.write` — archive transaction: upsert them into
   ``archived_rows`` keyed by (table_name, source_pk) and COMMIT.
3. :meth:`Protocol.delete` — still in the source transaction, whose locks kept
   the rows unchanged since step 1: DELETE exactly those keys and COMMIT.

A source row is therefore deleted only after an archived copy equal to its
current values is committed. A crash between 2 and 3 leaves the row in both
places; the next run upserts it again (same values) and deletes it.

How a run drives its batches (:class:`BatchRun`), decided by asking the
backends' :class:`~.backends.base.Capabilities`:

* one after another (:func:`BatchRun.one_batch`), the rule for a database whose
  writers exclude each other (SQLite) and for small MySQL tables;
* overlapped on two source connections (``row_locks``; :mod:`.pipeline`): the
  next batch is read while this one is written, each batch keeping the order
  above — by this protocol, or by a backend's own mover: PostgreSQL → PostgreSQL
  batches piped COPY to COPY (``copy``), MariaDB → MariaDB batches moved inside
  the server (``in_server_moves``).

When a source and archive are one SQLite file, steps 2 and 3 commit together
(one transaction on one connection).
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable

import sqlalchemy as sa

from .backends import backend_of
from .backends.base import ArchiveOps, Batch, BatchStream, Mover, SourceOps
from .errors import DatabaseError, EngineError
from .pipeline import REDO, Held, Redo, Slot, delete_and_commit, open_slots, run_batches
from .plan import TablePlan

if TYPE_CHECKING:  # pragma: no cover
    from .lease import TableLease

#: Checkpoint names passed to ``checkpoint`` (tests use them to crash or pause there).
#: An in-server move (one transaction per batch) passes ``after_archive_insert`` (copied,
#: not committed) where the portable protocol passes ``after_archive_commit``.
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
    For a dry run only ``would_archive`` is set. ``extra``: how the batches
    moved (``in_server``, ``pipelined``, ``piped``; ``redone``: batches a
    pipeline rolled back and moved again alone).
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


@dataclass
class _Read(Held):
    """A batch read (``batch``) or being read (``stream``; its batch and last key once written)."""

    batch: Batch | None = None
    stream: BatchStream | None = None

    def discard(self) -> None:
        if self.stream is not None:
            self.slot.submit(self.stream.close).result()  # its cursor, before the transaction ends
        super().discard()


class Protocol:
    """The three steps of one batch of one run (the SQL is the backends' ops).

    With ``streams`` (the source streams from a server-side cursor and the archive takes
    record chunks: PostgreSQL), a batch streams from its connection into the archive
    during step 2. With ``shared`` (one SQLite file), step 2 writes in the source
    transaction and step 3's COMMIT commits both. The archive connection is used from
    the calling thread only; steps 1 and 3 run on the batch's slot.
    """

    def __init__(self, sops: SourceOps, aops: ArchiveOps, plan: TablePlan, aconn: sa.Connection, *,
                 shared: bool, now: datetime, run_id: int | None, hook: Callable[[str], None]) -> None:
        self.sops, self.aops, self.plan, self.aconn = sops, aops, plan, aconn
        self.shared, self.now, self.run_id, self.hook = shared, now, run_id, hook
        self.streams = sops.streams() and aops.streams and not shared

    def read(self, slot: Slot, after: tuple | None) -> _Read | None:
        """Step 1: begin the batch's source transaction and lock its rows (None: nothing left)."""
        trans = slot.conn.begin()
        limit = self.plan.spec.batch_size
        try:
            if self.streams:
                stream = self.sops.stream_batch(slot.conn, self.plan, after, limit)
                batch, found = None, bool(stream)
            else:
                stream = None
                batch = self.sops.fetch_batch(slot.conn, self.plan, after, limit)
                found = bool(batch)
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        except BaseException:
            trans.rollback()
            raise
        if not found:
            trans.rollback()
            return None
        self.hook("after_select")  # streamed: the first rows are read and locked, the rest as they stream
        return _Read(slot, trans, after, None if batch is None else batch.last_key, batch, stream)

    def write(self, read: _Read) -> None:
        """Step 2: upsert the batch into the archive and commit it (or, shared, leave it to step 3)."""
        table = self.plan.table_name
        try:
            if self.shared:  # one SQLite file: archive and delete commit together, atomically
                self.aops.upsert(read.slot.conn, table, read.batch.records, self.now, self.run_id)
            else:
                with self.aconn.begin():
                    if read.stream is not None:  # reads the slot's connection here; its thread is idle
                        written = self.aops.upsert_stream(self.aconn, table, read.stream.chunks(), self.now,
                                                          self.run_id)
                        read.batch = read.stream.finish()
                        if written != len(read.batch):  # never delete a row whose copy is not in this commit
                            raise EngineError(f"archive upsert of '{table}' took {written} of {len(read.batch)} rows")
                        read.last_key = read.batch.last_key
                    else:
                        self.aops.upsert(self.aconn, table, read.batch.records, self.now, self.run_id)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("archive", self.aops.explain(exc)) from exc
        self.hook("after_archive_commit")

    def delete(self, read: _Read, *, redo: bool = True) -> tuple[int, int] | Redo:
        """Step 3: delete the batch's keys and commit the source; (rows read, rows deleted) or REDO."""
        deleted = delete_and_commit(read, lambda: self.sops.delete_keys(read.slot.conn, self.plan, read.batch.keys),
                                    self.hook, self.plan.table_name, self.sops, redo=redo)
        return deleted if deleted is REDO else (len(read.batch), deleted)

    def hand_on(self, read: _Read) -> Future:
        """Step 2 here, then step 3 on the batch's slot (overlapped runs; a failure here leaves
        the batch to :func:`.pipeline.run_batches`, which rolls it back)."""
        self.write(read)
        return read.slot.submit(self.delete, read)


@dataclass
class BatchRun:
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
    lease: "TableLease | None"
    started: float

    def __post_init__(self) -> None:
        self.protocol = Protocol(self.sops, self.aops, self.plan, self.aconn, shared=self.shared, now=self.now,
                                 run_id=self.run_id, hook=self.hook)
        self.inline = Slot(self.sconn, inline=True)

    def move(self, archive: sa.Engine, *, in_server: bool, pipeline: bool) -> None:
        """Overlapped (in-server, piped or by the protocol) when the databases allow it, else one
        batch after another."""
        caps = self.sops.capabilities
        try:
            overlap = pipeline and not self.shared and caps.row_locks and self.sops.overlaps(self.plan, self.sconn)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        if not overlap:
            after: tuple | None = None
            while not self.stop_requested():
                after = self.one_batch(after)
                if after is None:
                    break
            return
        backend = backend_of(self.sconn.engine)
        same_kind = backend is backend_of(archive)
        mover: Mover | None = None
        if in_server and same_kind and caps.in_server_moves:
            try:
                mover = backend.open_in_server_move(self.sops, self.plan, self.sconn, self.aconn, archive,
                                                    now=self.now, run_id=self.run_id, checkpoint=self.hook)
            except sa.exc.DBAPIError as exc:
                raise DatabaseError("source", self.sops.explain(exc)) from exc
            if mover is not None:
                self.result.extra["in_server"] = True
                try:
                    mover.run(self.stop_requested, self.redo_batch, self.counted)
                finally:
                    mover.close()
                return
        self.result.extra["pipelined"] = True
        try:
            slots, close_slots = open_slots(self.sops, self.sconn)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        try:
            if same_kind and caps.copy and self.protocol.streams:
                mover = backend.open_copy_pipe(self.sops, self.aops, self.plan, slots, self.aconn, now=self.now,
                                               run_id=self.run_id, checkpoint=self.hook)
            if mover is not None:
                self.result.extra["piped"] = True
                try:
                    mover.run(self.stop_requested, self.redo_batch, self.counted)
                finally:
                    mover.close()
            else:
                run_batches(slots, self.protocol.read, self.protocol.hand_on, stop_requested=self.stop_requested,
                            generic_batch=self.redo_batch, committed=self.counted,
                            read_ahead=not self.protocol.streams)
        finally:
            close_slots()

    def stop_requested(self) -> bool:
        """Checked between batches: a stop request, or a lost lease (raises LeaseLost)."""
        if self.should_stop():
            self.result.stopped = True
            return True
        if self.lease is not None:
            try:
                self.lease.renew_if_due()
            except sa.exc.DBAPIError as exc:
                raise DatabaseError("archive", self.aops.explain(exc)) from exc
        return False

    def one_batch(self, after: tuple | None) -> tuple | None:
        """One batch by the protocol on the run's connection; its last key (None: nothing left).

        A lock conflict fails it like any database error (nothing beside it to redo it after).
        """
        read = self.protocol.read(self.inline, after)
        if read is None:
            return None
        try:
            self.protocol.write(read)
        except BaseException:
            read.discard()
            raise
        outcome = self.protocol.delete(read, redo=False)
        assert not isinstance(outcome, Redo)
        self.counted(*outcome)
        return read.last_key

    def redo_batch(self, after: tuple | None) -> tuple | None:
        """A batch a pipeline rolled back, moved by the protocol alone (counted in extra["redone"])."""
        self.result.extra["redone"] = self.result.extra.get("redone", 0) + 1
        return self.one_batch(after)

    def counted(self, n_read: int, n_deleted: int) -> None:
        """A batch committed: count it, then report it."""
        self.result.rows_read += n_read
        self.result.rows_archived += n_read
        self.result.rows_deleted += n_deleted
        self.result.batches += 1
        self.hook("after_batch")
        if self.on_batch is not None:
            self.on_batch(BatchProgress(self.plan.table_name, "archive", self.result.batches, n_read,
                                        self.result.rows_deleted, time.perf_counter() - self.started))


__all__ = ["ArchiveResult", "BatchProgress", "BatchRun", "CHECKPOINTS", "Protocol"]
