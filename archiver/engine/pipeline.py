"""Pipelined batches: two source connections take turns, each with its own thread.

Every batch keeps the batch protocol exactly: its rows stay locked in its own source
transaction from the read to the source COMMIT, and its DELETE runs only after its
archive copy is committed. What a pipeline adds is overlap between batches: while batch
k is written to the archive, batch k+1 is locked and read on the other connection, and
batch k's DELETE and COMMIT run on its connection's thread while batch k+1 is written.

:func:`run_batches` is the loop, shared by :class:`PipelinedArchive` (the generic
protocol, for sources whose writers do not block each other: MySQL/MariaDB, PostgreSQL)
and by in-server moves (:mod:`.in_server`). A batch whose last step cannot be done that
way (a lock conflict with the batch beside it, a row the server cannot render, ...) is
rolled back and *redone*: once nothing else is in flight, it is moved by the generic
protocol alone, then the pipeline goes on. A source whose writers exclude each other
(SQLite) runs its batches one after another.
"""
from __future__ import annotations

import logging
import os
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from .dialects import ArchiveOps, Batch, BatchStream, SourceOps
from .errors import DatabaseError, EngineError, dbapi_reason, is_lock_conflict
from .plan import TablePlan

log = logging.getLogger(__name__)


class Slot:
    """A source connection and the one thread that runs its statements, in order."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archiver-batch")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._thread.submit(fn, *args)

    def rollback(self, trans: sa.RootTransaction) -> None:
        """Roll ``trans`` back on this slot's thread (where its statements ran)."""
        self.submit(trans.rollback).result()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


@dataclass
class Held:
    """A batch read and locked in ``trans`` on ``slot``: keys after ``after`` up to ``last_key``."""

    slot: Slot
    trans: sa.RootTransaction
    after: tuple | None
    last_key: tuple

    def discard(self) -> None:
        """Roll the batch back, unmoved (on its slot's thread, where its statements ran)."""
        self.slot.rollback(self.trans)


class _Redo:
    """Outcome of a batch rolled back to be moved the generic way."""


#: What a batch's last step returns instead of its counts when it must be redone.
REDO = _Redo()


def delete_and_commit(held: Held, delete: Callable[[], int], hook: Callable[[str], None],
                      table_name: str) -> int | _Redo:
    """A batch's last step: ``delete()`` its keys and COMMIT its source transaction (after its
    copies are committed; for an in-server move, with them). Returns what ``delete()`` did.

    A lock conflict with the batch beside it rolls this one back (its rows stay in the source)
    and returns REDO; the generic path then moves it alone.
    """
    try:
        try:
            deleted = delete()
        except sa.exc.DBAPIError as exc:
            if is_lock_conflict(exc):
                log.info("batch of '%s' met a lock conflict (%s); moving it again alone",
                         table_name, dbapi_reason(exc))
                held.trans.rollback()
                return REDO
            raise DatabaseError("source", dbapi_reason(exc)) from exc
        hook("after_source_delete")
        try:
            held.trans.commit()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", dbapi_reason(exc)) from exc
    except BaseException:
        if held.trans.is_active:
            held.trans.rollback()
        raise
    return deleted


class InFlight:
    """Batches whose last step runs on a slot's thread, finished in the order they started."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Future, Any]] = deque()

    def add(self, future: Future, tag: Any = None) -> None:
        self._queue.append((future, tag))

    def finished(self, wait: bool) -> Iterator[tuple[Any, Any]]:
        """(outcome, tag) of each finished batch in order — of all of them when ``wait``.

        A batch that failed raises its error here (the ones after it stay queued).
        """
        while self._queue and (wait or self._queue[0][0].done()):
            future, tag = self._queue.popleft()
            yield future.result(), tag

    def abandon(self, on_outcome: Callable[[Any], None]) -> None:
        """After a failure: wait for every batch still running; report the others' outcomes."""
        while self._queue:
            future, _tag = self._queue.popleft()
            try:
                outcome = future.result()
            except BaseException:  # noqa: BLE001 - the first failure is the one being raised
                continue
            try:
                on_outcome(outcome)
            except BaseException:  # noqa: BLE001
                pass


def run_batches(slots: list[Slot], read: Callable[[Slot, tuple | None], Held | None],
                hand_on: Callable[[Held], Future], *, stop_requested: Callable[[], bool],
                generic_batch: Callable[[tuple | None], tuple | None],
                committed: Callable[[int, int], None], read_ahead: bool = True) -> None:
    """Move batches, pipelined, until none is left or ``stop_requested()``.

    ``read(slot, after)`` (on the slot's thread) locks the next batch after ``after``
    (None: nothing left). ``hand_on(held)`` (here) takes the batch on and returns the
    future of its last step, whose outcome is ``(rows_read, rows_deleted)`` once its
    source transaction committed, or :data:`REDO`. With ``read_ahead`` the next batch is
    read while ``hand_on`` runs; without it (a batch whose last key is known only once
    ``hand_on`` has streamed it), after. ``generic_batch(after)`` moves one batch the
    generic way and returns its last key (None: nothing left).
    ``committed(rows_read, rows_deleted)`` is called here for each committed batch, in
    order. Nothing is in flight when this returns or raises.
    """
    flight = InFlight()
    pending: Future | None = None  # the next batch's read
    held: Held | None = None       # a batch read and not handed on yet
    turn, after = 0, None

    def finished(wait: bool) -> list[tuple | None]:
        redo = []
        for outcome, batch_after in flight.finished(wait):
            if outcome is REDO:
                redo.append(batch_after)
            else:
                committed(*outcome)
        return redo

    try:
        while True:
            if pending is None:
                pending = slots[turn].submit(read, slots[turn], after)
            held, pending = pending.result(), None
            redo = finished(wait=False)
            stop = False
            if not redo and held is not None:
                stop = stop_requested()
                if not stop:
                    turn = (turn + 1) % len(slots)
                    if read_ahead:
                        after = held.last_key
                        pending = slots[turn].submit(read, slots[turn], after)
                    flight.add(hand_on(held), held.after)
                    if not read_ahead:
                        after = held.last_key
                        pending = slots[turn].submit(read, slots[turn], after)
                    held = None
                    continue
            # Leaving the pipeline: nothing left, a stop, or a batch to redo.
            if held is not None:
                held.discard()
                held = None
            redo += finished(wait=True)  # nothing may run beside the generic path
            if not redo or stop:
                break
            # Redo the first such batch the generic way and go on after it (the rows of any
            # batch committed since are gone from the source, so nothing is read twice).
            after = generic_batch(redo[0])
            if after is None:
                break
    except BaseException:
        flight.abandon(lambda outcome: None if outcome is REDO else committed(*outcome))
        held_list = [held]
        if pending is not None:
            try:
                held_list.append(pending.result())
            except BaseException:  # noqa: BLE001 - it failed: nothing of it to roll back
                pass
        for h in held_list:
            if h is not None:
                try:
                    h.discard()
                except BaseException:  # noqa: BLE001 - closing the connection rolls it back anyway
                    pass
        raise


@dataclass
class _Read(Held):
    batch: Batch | None = None         # read whole (fetch_batch)
    stream: BatchStream | None = None  # or being read (stream_batch): batch and last_key once written

    def discard(self) -> None:
        if self.stream is not None:
            self.slot.submit(self.stream.close).result()  # its cursor, before the transaction ends
        super().discard()


class PipelinedArchive:
    """The generic batch protocol over two source connections (see the module docstring).

    With ``streams`` (the archive takes record chunks as the source reads them: PostgreSQL
    COPY), a batch streams from its slot's connection into the archive here, and only its
    DELETE and COMMIT overlap the next batch. The archive connection is used from the
    calling thread only.
    """

    def __init__(self, sops: SourceOps, aops: ArchiveOps, plan: TablePlan, slots: list[Slot],
                 aconn: sa.Connection, *, now: datetime, run_id: int | None, hook: Callable[[str], None],
                 streams: bool = False) -> None:
        self.sops, self.aops, self.plan = sops, aops, plan
        self.slots, self.aconn = slots, aconn
        self.now, self.run_id, self.hook = now, run_id, hook
        self.streams = streams

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[[int, int], None]) -> None:
        run_batches(self.slots, self._read, self._hand_on, stop_requested=stop_requested,
                    generic_batch=generic_batch, committed=committed, read_ahead=not self.streams)

    def _read(self, slot: Slot, after: tuple | None) -> _Read | None:
        trans = slot.conn.begin()
        limit = self.plan.spec.batch_size
        try:
            if self.streams:
                stream = self.sops.stream_batch(slot.conn, self.plan, after, limit)
                batch = None
                found = bool(stream)
            else:
                stream = None
                batch = self.sops.fetch_batch(slot.conn, self.plan, after, limit)
                found = bool(batch)
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            raise DatabaseError("source", dbapi_reason(exc)) from exc
        except BaseException:
            trans.rollback()
            raise
        if not found:
            trans.rollback()
            return None
        self.hook("after_select")  # streamed: the first rows are read and locked, the rest as they stream
        return _Read(slot, trans, after, None if batch is None else batch.last_key, batch, stream)

    def _hand_on(self, read: _Read) -> Future:
        """Write the batch to the archive and commit it (here), then DELETE on its slot."""
        table, conn = self.plan.table_name, self.aconn
        try:
            with conn.begin():
                if read.stream is not None:  # reads the slot's connection here; its thread is idle meanwhile
                    written = self.aops.upsert_stream(conn, table, read.stream.chunks(), self.now, self.run_id)
                    read.batch = read.stream.finish()
                    if written != len(read.batch):  # never delete a row whose copy is not in this commit
                        raise EngineError(f"archive upsert of '{table}' took {written} of {len(read.batch)} rows")
                    read.last_key = read.batch.last_key
                else:
                    self.aops.upsert(conn, table, read.batch.records, self.now, self.run_id)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("archive", dbapi_reason(exc)) from exc
        self.hook("after_archive_commit")
        return read.slot.submit(self._delete, read)

    def _delete(self, read: _Read) -> tuple[int, int] | _Redo:
        deleted = delete_and_commit(read, lambda: self.sops.delete_keys(read.slot.conn, self.plan, read.batch.keys),
                                    self.hook, self.plan.table_name)
        return deleted if deleted is REDO else (len(read.batch), deleted)


class _KeySink:
    """Where a COPY … TO STDOUT writes: passes the bytes on, and reads each line's second field
    (``source_pk``: the integer key) for the DELETE."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.keys: list[bytes] = []
        self._tail = b""

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.out.write(data)
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        self.keys += [line.split(b"\t", 2)[1] for line in lines]
        return len(data)

    def key_array(self) -> str:
        """The keys as one PostgreSQL array text, ``{1,2,3}`` (checked: integers only)."""
        text = b",".join(self.keys).decode("ascii")
        if self._tail or not _INT_LIST.fullmatch(text):
            raise EngineError("the batch's keys did not read back from the COPY")
        return "{" + text + "}"


_INT_LIST = re.compile(r"-?[0-9]+(?:,-?[0-9]+)*")


@dataclass
class _Piped(Held):
    keys: str = ""  # "{1,2,3}", once copied
    n: int = 0


class PipedArchive:
    """PostgreSQL → PostgreSQL in bytes: each batch goes from ``COPY (SELECT … FOR UPDATE) TO
    STDOUT`` on its source connection straight into ``COPY archived_rows FROM STDIN``, the
    lines written by the source server exactly as ``archived_rows`` takes them (payload built
    by the server, as in :mod:`.fast_pg`); the keys are read off the lines for the DELETE.
    The archive commits only once the source COPY has ended well and the counts agree; a
    batch the archive refuses (a key archived already, a value the server cannot render) is
    rolled back and redone the generic way. The DELETE and COMMIT overlap the next batch.
    """

    def __init__(self, sops: Any, aops: Any, plan: TablePlan, slots: list[Slot], aconn: sa.Connection, *,
                 now: datetime, run_id: int | None, hook: Callable[[str], None]) -> None:
        self.sops, self.aops, self.plan = sops, aops, plan
        self.slots, self.aconn = slots, aconn
        self.now, self.run_id, self.hook = now, run_id, hook

    @staticmethod
    def usable(sops: Any, aops: Any, plan: TablePlan, aconn: sa.Connection, now: datetime) -> bool:
        return (hasattr(sops, "copy_out_statement") and hasattr(aops, "copy_in") and aops._usable(aconn)
                and sops.copy_out_statement(plan, None, 1, now, None) is not None)

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[[int, int], None]) -> None:
        run_batches(self.slots, self._read, self._hand_on, stop_requested=stop_requested,
                    generic_batch=generic_batch, committed=committed, read_ahead=False)

    def _read(self, slot: Slot, after: tuple | None) -> _Piped | None:
        trans = slot.conn.begin()
        try:
            found = self.sops.any_left(slot.conn, self.plan, after)
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            raise DatabaseError("source", dbapi_reason(exc)) from exc
        if not found:
            trans.rollback()
            return None
        return _Piped(slot, trans, after, None)

    def _hand_on(self, held: _Piped) -> Future:
        sql, params = self.sops.copy_out_statement(self.plan, held.after, self.plan.spec.batch_size, self.now,
                                                   self.run_id)
        rfd, wfd = os.pipe()
        reader, writer = os.fdopen(rfd, "rb", buffering=1 << 16), os.fdopen(wfd, "wb", buffering=1 << 16)
        sink = _KeySink(writer)
        produced = held.slot.submit(self._produce, held, sql, params, sink, writer)
        try:
            with self.aconn.begin():
                try:
                    try:
                        copied = self.aops.copy_in(self.aconn, reader)
                    except sa.exc.DBAPIError as exc:
                        raise DatabaseError("archive", dbapi_reason(exc)) from exc
                finally:
                    while reader.read(1 << 16):  # whatever happened here, let the source COPY end
                        pass
                    produced.result()  # the source's error, if any, before anything commits
                if copied is None or copied == 0:
                    return held.slot.submit(self._give_up, held)
                if copied != len(sink.keys):
                    raise EngineError(f"archive COPY of '{self.plan.table_name}' took {copied} of "
                                      f"{len(sink.keys)} rows")
                held.keys, held.n, held.last_key = sink.key_array(), copied, (int(sink.keys[-1]),)
        finally:
            reader.close()
        self.hook("after_archive_commit")
        return held.slot.submit(self._delete, held)

    def _produce(self, held: _Piped, sql: str, params: dict[str, Any], sink: _KeySink, writer: Any) -> None:
        try:
            self.sops.copy_out(held.slot.conn, sql, params, sink)
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", dbapi_reason(exc)) from exc
        finally:
            writer.close()
        self.hook("after_select")  # the batch's rows are read and locked

    def _give_up(self, held: _Piped) -> _Redo:
        held.trans.rollback()
        return REDO

    def _delete(self, held: _Piped) -> tuple[int, int] | _Redo:
        deleted = delete_and_commit(held, lambda: self.sops.delete_key_text(held.slot.conn, self.plan, held.keys),
                                    self.hook, self.plan.table_name)
        return deleted if deleted is REDO else (held.n, deleted)


def open_slots(sops: SourceOps, sconn: sa.Connection) -> tuple[list[Slot], Callable[[], None]]:
    """The run's source connection and a second, prepared one, as slots; and how to close them."""
    extra = sops.connect()
    try:
        undo = sops.prepare(extra)
        for conn in (sconn, extra):
            sops.prepare_pipelined(conn)
    except BaseException:
        extra.close()
        raise
    slots = [Slot(sconn), Slot(extra)]

    def close() -> None:
        try:
            for slot in slots:
                slot.close()
            if undo is not None:
                undo()
        finally:
            extra.close()

    return slots, close


__all__ = ["Held", "InFlight", "PipedArchive", "PipelinedArchive", "REDO", "Slot", "delete_and_commit",
           "open_slots", "run_batches"]
