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
  writers exclude each other (SQLite) and for small MySQL tables — or by the
  backend's own in-server mover: two SQLite files, the source attached to the
  archive connection (``in_server_moves``);
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
from .errors import DatabaseError, EngineError, LockConflict
from .objects import ObjectBatch, collect, delete_order
from .pipeline import REDO, Held, Redo, Slot, delete_and_commit, open_slots, run_batches
from .plan import TablePlan
from .throttle import StopRun, Throttle

if TYPE_CHECKING:  # pragma: no cover
    from .lease import TableLease

#: Checkpoint names passed to ``checkpoint`` (tests use them to crash or pause there).
#: An in-server move (one transaction per batch) passes ``after_archive_insert`` (copied,
#: not committed) where the portable protocol passes ``after_archive_commit``; a batch with
#: descendants passes ``after_child_delete`` between their DELETEs and its own rows'.
CHECKPOINTS = ("after_select", "after_archive_commit", "after_archive_insert", "after_child_delete",
               "after_source_delete", "after_batch")


@dataclass(frozen=True)
class BatchProgress:
    """Reported to ``on_batch`` after each committed batch."""

    table_name: str
    kind: str
    batch: int
    rows: int
    total_rows: int
    elapsed_seconds: float
    #: Run totals so far (archive runs): rows selected, rows archived, rows held back.
    rows_read: int = 0
    rows_archived: int = 0
    rows_skipped: int = 0


@dataclass
class ArchiveResult:
    """What one archive run of one table did.

    ``rows_read`` rows selected and locked, ``rows_archived`` upserted into the
    archive, ``rows_deleted`` deleted from the source. ``stopped`` is True when
    ``should_stop`` ended the run early (committed batches stay committed).
    For a dry run only ``would_archive`` is set. A table with child tables
    (``TablePlan.graph``) also counts the rows that moved with its rows
    (``children``: table → rows) and the rows left in place because a row that
    stays still references them (``rows_skipped``; ``skipped``: reference →
    rows). ``extra``: how the batches moved (``in_server``, ``pipelined``,
    ``piped``; ``redone``: batches a pipeline rolled back and moved again alone).
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
    rows_skipped: int = 0
    stop_reason: str | None = None  # why a run ended early on its own (a budget, critical load)
    stopped_on_critical_load: bool = False
    children: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def add_objects(self, objects: ObjectBatch) -> None:
        """Count one committed batch's descendants and held roots."""
        self.add_children({table: len(rows) for table, rows in objects.children.items()})
        self.rows_skipped += len(objects.held)
        for why in objects.held.values():
            self.skipped[why] = self.skipped.get(why, 0) + 1

    def add_children(self, counts: dict[str, int]) -> None:
        """Count one committed batch's descendants (rows by child table)."""
        for table, rows in counts.items():
            self.children[table] = self.children.get(table, 0) + rows


#: Python's own cost of one record a batch holds beside its payload text (the driver's row, the
#: record dict and its strings, the archive write's copy): about 1 KB allocated (tracemalloc, rows
#: of 70-150 payload bytes), about 1.5 KB of resident memory (a PostgreSQL run with children).
RECORD_BYTES = 1500


@dataclass
class _Read(Held):
    """A batch read (``batch``) or being read (``stream``; its batch and last key once written);
    ``objects``: its roots' descendants and held roots (tables with children or referrers)."""

    batch: Batch | None = None
    stream: BatchStream | None = None
    objects: ObjectBatch | None = None

    def discard(self) -> None:
        if self.stream is not None:
            self.slot.submit(self.stream.close).result()  # its cursor, before the transaction ends
        super().discard()

    def held_bytes(self) -> int | None:
        """About the memory the batch held, its descendants included: each record's payload text plus
        :data:`RECORD_BYTES`. The sizer's byte cap then bounds a parent batch with all that moves with it."""
        if self.batch is None:
            return None
        records = self.batch.records
        total = sum(len(r["payload"]) for r in records if r["payload"] is not None) + RECORD_BYTES * len(records)
        for rows in (self.objects.children.values() if self.objects is not None else ()):
            total += sum(len(record["payload"]) for _key, record, _root, _level in rows
                         if record["payload"] is not None) + RECORD_BYTES * len(rows)
        return total


class Protocol:
    """The three steps of one batch of one run (the SQL is the backends' ops).

    With ``streams`` (the source streams from a server-side cursor and the archive takes
    record chunks: PostgreSQL), a batch streams from its connection into the archive
    during step 2. With ``shared`` (one SQLite file), step 2 writes in the source
    transaction and step 3's COMMIT commits both. The archive connection is used from
    the calling thread only; steps 1 and 3 run on the batch's slot.
    """

    def __init__(self, sops: SourceOps, aops: ArchiveOps, plan: TablePlan, aconn: sa.Connection, *,
                 shared: bool, now: datetime, run_id: int | None, hook: Callable[[str], None],
                 size: Callable[[], int]) -> None:
        self.sops, self.aops, self.plan, self.aconn = sops, aops, plan, aconn
        self.shared, self.now, self.run_id, self.hook = shared, now, run_id, hook
        self.size = size
        self.relational = not plan.graph.trivial
        # A batch with children is read whole first: its descendants are found from all its keys.
        self.streams = sops.streams() and aops.streams and not shared and not self.relational

    def read(self, slot: Slot, after: tuple | None) -> _Read | None:
        """Step 1: begin the batch's source transaction and lock its rows (None: nothing left)."""
        limit = self.size()  # may wait (a throttle's pause): before the transaction takes any lock
        trans = slot.conn.begin()
        try:
            if self.streams:
                stream = self.sops.stream_batch(slot.conn, self.plan, after, limit)
                batch, found = None, bool(stream)
            else:
                stream = None
                batch = self.sops.fetch_batch(slot.conn, self.plan, after, limit)
                found = bool(batch)
            objects = self.collect(slot.conn, batch) if found and self.relational else None
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            if self.sops.is_lock_conflict(exc):
                raise LockConflict("source", self.sops.explain(exc)) from exc
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        except BaseException:
            trans.rollback()
            raise
        if not found:
            trans.rollback()
            return None
        self.hook("after_select")  # streamed: the first rows are read and locked, the rest as they stream
        return _Read(slot, trans, after, None if batch is None else batch.last_key, batch, stream, objects)

    def collect(self, conn: sa.Connection, batch: Batch) -> ObjectBatch:
        """Lock the batch's descendants and leave out the roots a reference holds back."""
        dates = {k: r["row_date"] for k, r in zip(batch.keys, batch.records)}
        objects = collect(conn, self.sops, self.plan, batch.keys, dates)
        if objects.held:  # the walk goes on past them (last_key stays the batch's)
            moving = set(objects.roots)
            kept = [(k, r) for k, r in zip(batch.keys, batch.records) if k in moving]
            batch.keys, batch.records = [k for k, _ in kept], [r for _, r in kept]
        return objects

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
                        if read.objects is not None and read.objects.children:
                            self.write_children(self.aconn, read)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("archive", self.aops.explain(exc)) from exc
        self.hook("after_archive_commit")

    def write_children(self, conn: sa.Connection, read: _Read) -> None:
        """Upsert the batch's descendants under their own table names, each linked to the archived
        row of the root it moved with (in the roots' archive transaction)."""
        objects = read.objects
        assert objects is not None
        spk = {k: r["source_pk"] for k, r in zip(read.batch.keys, read.batch.records)}
        ids = self.aops.archived_ids(conn, self.plan.table_name, list(spk.values()))
        for table, rows in objects.children.items():
            records = []
            for _key, record, root, level in rows:  # linked in place: the batch's records are its own
                record["root_id"], record["depth"] = ids[spk[root]], level
                records.append(record)
            self.aops.upsert(conn, table, records, self.now, self.run_id)

    def delete(self, read: _Read, *, redo: bool = True) -> tuple[int, int, ObjectBatch | None, int | None] | Redo:
        """Step 3: delete the batch's keys (descendants first) and commit the source;
        (rows read, rows deleted, objects, bytes held) or REDO."""
        def delete() -> int:
            conn = read.slot.conn
            if read.objects is not None:
                self.delete_children(conn, read.objects)
            return self.sops.delete_keys(conn, self.plan, read.batch.keys) if read.batch.keys else 0

        deleted = delete_and_commit(read, delete, self.hook, self.plan.table_name, self.sops, redo=redo)
        if deleted is REDO:
            return REDO
        return len(read.batch), deleted, read.objects, read.held_bytes()

    def delete_children(self, conn: sa.Connection, objects: ObjectBatch) -> None:
        """Delete the descendants deepest first (never leaving it to ON DELETE CASCADE), then make sure
        no child row of a moving row is left for the cascade to take with no archived copy."""
        for table, keys in delete_order(self.plan, objects):
            member = self.plan.members[table]
            deleted = self.sops.delete_rows(conn, member.table, member.pk, keys)
            if deleted != len(keys):
                raise EngineError(f"'{table}' rows of a batch of '{self.plan.table_name}' changed while locked "
                                  f"({deleted} of {len(keys)} deleted); batch rolled back")
        self.hook("after_child_delete")
        moving = {table: [r[0] for r in rows] for table, rows in objects.children.items()}
        moving[self.plan.table_name] = moving.get(self.plan.table_name, []) + list(objects.roots)
        for edge in self.plan.graph.child_edges:
            parents = moving.get(edge.parent)
            if not parents:
                continue
            exclude = objects.roots if edge.child == self.plan.table_name else ()
            left = self.sops.count_referencing(conn, self.plan, edge, parents, exclude)
            if left:
                raise EngineError(f"{left} row(s) of '{edge.child}' reference a row of '{edge.parent}' about to be "
                                  f"deleted but were not archived with it; batch rolled back")

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
    sizer: BatchSizer
    throttle: Throttle

    #: Times one batch is tried again, smaller each time, when the source answers with a lock wait,
    #: a deadlock or a statement timeout (adaptive sizing; a fixed size fails at once, as it did).
    CONFLICT_RETRIES = 4

    def __post_init__(self) -> None:
        self.protocol = Protocol(self.sops, self.aops, self.plan, self.aconn, shared=self.shared, now=self.now,
                                 run_id=self.run_id, hook=self.hook, size=self.next_size)
        self.inline = Slot(self.sconn, inline=True)
        self.throttle.on_lag = self.sizer.conflicted
        self.throttle.should_stop = self.should_stop

    def next_size(self) -> int:
        """The next batch's row count, asked right before it is read: the throttle sleeps or pauses
        here first, while this batch holds no lock (raises StopRun)."""
        self.throttle.before_batch()
        return self.sizer()

    def move(self, archive: sa.Engine, *, in_server: bool, pipeline: bool) -> None:
        """Move the batches; a throttle's stop (a budget reached, critical load) ends the run cleanly
        between batches, saying why (``result.stop_reason``)."""
        try:
            deleted = self.result.rows_deleted
            self._move(archive, in_server=in_server, pipeline=pipeline)
            while self.freed_by_the_last_pass(self.result.rows_deleted - deleted):
                deleted = self.result.rows_deleted
                self.pass_again()
        except StopRun as exc:
            self.result.stopped = True
            self.result.stop_reason = str(exc)
            self.result.stopped_on_critical_load = exc.critical

    def freed_by_the_last_pass(self, deleted: int) -> bool:
        """Whether another pass over the table could move rows this one held back: it deleted rows,
        and rows were held by a reference of their own table (``employees.manager_id``, no cascade),
        whose referrers may have left since (a report in a later batch; on MySQL/MariaDB, which
        check keys row by row, a report in the same batch)."""
        if deleted == 0 or self.result.stopped or not self.result.skipped:
            return False
        own = {hold.describe() for hold in self.plan.graph.holds if hold.is_self}
        return not own.isdisjoint(self.result.skipped)

    def pass_again(self) -> None:
        """One more pass from the table's first key, one batch after another. The rows it reads
        again were counted as read and skipped by the last pass: that count starts over."""
        self.result.rows_read -= self.result.rows_skipped
        self.result.rows_skipped = 0
        self.result.skipped = {}
        self.result.extra["passes"] = self.result.extra.get("passes", 1) + 1
        self.one_after_another()

    def one_after_another(self) -> None:
        """Batches by the protocol from the table's first key, each after the last has committed."""
        after: tuple | None = None
        while not self.stop_requested():
            after = self.one_batch(after)
            if after is None:
                break

    def _move(self, archive: sa.Engine, *, in_server: bool, pipeline: bool) -> None:
        """In-server, overlapped (piped or by the protocol) when the databases allow it, else one
        batch after another."""
        caps = self.sops.capabilities
        self.sizer.restart_clock()
        try:
            overlap = pipeline and not self.shared and caps.row_locks and self.sops.overlaps(self.plan, self.sconn)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        backend = backend_of(self.sconn.engine)
        same_kind = backend is backend_of(archive)
        # An in-server mover says itself which objects it can move (SQLite's: children too); a COPY pipe
        # copies the root table's rows only: not for tables with children or referrers.
        if in_server and same_kind and caps.in_server_moves and not self.shared:
            try:
                in_server_mover = backend.open_in_server_move(
                    self.sops, self.plan, self.sconn, self.aconn, archive, now=self.now, run_id=self.run_id,
                    checkpoint=self.hook, overlapped=overlap)
            except sa.exc.DBAPIError as exc:
                raise DatabaseError("source", self.sops.explain(exc)) from exc
            if in_server_mover is not None:
                self.result.extra["in_server"] = True
                try:
                    in_server_mover.run(self.stop_requested, self.redo_batch, self.counted, self.next_size)
                finally:
                    in_server_mover.close()
                return
        if not overlap:
            self.one_after_another()
            return
        mover: Mover | None = None
        self.result.extra["pipelined"] = True
        try:
            slots, close_slots = open_slots(self.sops, self.sconn)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        try:
            if same_kind and caps.copy and self.protocol.streams and not self.protocol.relational:
                mover = backend.open_copy_pipe(self.sops, self.aops, self.plan, slots, self.aconn, now=self.now,
                                               run_id=self.run_id, checkpoint=self.hook)
            if mover is not None:
                self.result.extra["piped"] = True
                try:
                    mover.run(self.stop_requested, self.redo_batch, self.counted, self.next_size)
                finally:
                    mover.close()
            else:
                run_batches(slots, self.read_overlapped, self.protocol.hand_on, stop_requested=self.stop_requested,
                            generic_batch=self.redo_batch, committed=self.counted,
                            read_ahead=not self.protocol.streams)
        finally:
            close_slots()

    def stop_requested(self) -> bool:
        """Checked between batches: a stop request, a run budget reached, or a lost lease (raises LeaseLost)."""
        if self.should_stop():
            self.result.stopped = True
            return True
        reason = self.throttle.budget_left(self.result.rows_read)
        if reason is not None:
            self.result.stopped = True
            self.result.stop_reason = reason
            return True
        if self.lease is not None:
            try:
                self.lease.renew_if_due()
            except sa.exc.DBAPIError as exc:
                raise DatabaseError("archive", self.aops.explain(exc)) from exc
        return False

    def one_batch(self, after: tuple | None) -> tuple | None:
        """One batch by the protocol on the run's connection; its last key (None: nothing left).

        With adaptive sizing, a lock conflict on the source (the batch's rows stay where they
        were) is tried again with half the rows, up to :attr:`CONFLICT_RETRIES` times; with a
        fixed size it fails like any database error.
        """
        retries = self.CONFLICT_RETRIES if self.sizer.adaptive else 0
        for attempt in range(retries + 1):
            last = attempt == retries
            read = None
            try:
                read = self.protocol.read(self.inline, after)
                if read is None:
                    return None
                self.protocol.write(read)
            except BaseException as exc:
                if read is not None:
                    read.discard()
                if last or not isinstance(exc, LockConflict) or exc.side != "source":
                    raise
                self.sizer.conflicted()
                continue
            outcome = self.protocol.delete(read, redo=not last)
            if isinstance(outcome, Redo):
                self.sizer.conflicted()
                continue
            self.counted(*outcome)
            return read.last_key
        raise AssertionError("unreachable")  # pragma: no cover

    def read_overlapped(self, slot: Slot, after: tuple | None) -> _Read | Redo | None:
        """Step 1 beside another batch: a lock conflict on the source rolls it back, to be redone alone."""
        try:
            return self.protocol.read(slot, after)
        except LockConflict:
            return REDO

    def redo_batch(self, after: tuple | None) -> tuple | None:
        """A batch a pipeline rolled back, moved by the protocol alone (counted in extra["redone"])."""
        self.result.extra["redone"] = self.result.extra.get("redone", 0) + 1
        self.sizer.conflicted()
        return self.one_batch(after)

    def counted(self, n_read: int, n_deleted: int, objects: ObjectBatch | None = None,
                held_bytes: int | None = None, *, children: dict[str, int] | None = None) -> None:
        """A batch committed: count it, size the next one, then report it (``children``: the rows of
        each child table an in-server mover moved with it)."""
        self.sizer.committed(n_read + (len(objects.held) if objects is not None else 0), held_bytes)
        self.result.rows_read += n_read + (len(objects.held) if objects is not None else 0)
        self.result.rows_archived += n_read
        self.result.rows_deleted += n_deleted
        self.result.batches += 1
        if objects is not None:
            self.result.add_objects(objects)
        if children:
            self.result.add_children(children)
        self.hook("after_batch")
        if self.on_batch is not None:
            self.on_batch(BatchProgress(self.plan.table_name, "archive", self.result.batches, n_read,
                                        self.result.rows_deleted, time.perf_counter() - self.started,
                                        self.result.rows_read, self.result.rows_archived, self.result.rows_skipped))


__all__ = ["ArchiveResult", "BatchProgress", "BatchRun", "CHECKPOINTS", "Protocol"]
