"""Overlapping batches: two source connections take turns, each with its own thread.

Every batch keeps the batch protocol exactly: its rows stay locked in its own source
transaction from the read to the source COMMIT, and its DELETE runs only after its
archive copy is committed. What overlapping adds: while batch k is written to the
archive, batch k+1 is locked and read on the other connection, and batch k's DELETE and
COMMIT run on its connection's thread while batch k+1 is written.

:func:`run_batches` is the driver, shared by the portable protocol
(:mod:`archiver.engine.batches`) and by the backends' own movers (in-server moves,
COPY pipes). A batch whose last step cannot be done that way (a lock conflict with the
batch beside it, a row the server cannot render, ...) is rolled back and *redone*: once
nothing else is in flight, it is moved by the portable protocol alone, then the
pipeline goes on. Only sources with row locks overlap (``Capabilities.row_locks``).
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import sqlalchemy as sa

from .errors import DatabaseError

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import SourceOps

log = logging.getLogger(__name__)


class Slot:
    """A source connection and the one thread that runs its statements, in order.

    An ``inline`` slot runs them on the calling thread (one batch at a time).
    """

    def __init__(self, conn: sa.Connection, *, inline: bool = False) -> None:
        self.conn = conn
        self._thread = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="archiver-batch")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._thread is not None:
            return self._thread.submit(fn, *args)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the future
            done.set_exception(exc)
        return done

    def rollback(self, trans: sa.RootTransaction) -> None:
        """Roll ``trans`` back on this slot's thread (where its statements ran)."""
        self.submit(trans.rollback).result()

    def close(self) -> None:
        if self._thread is not None:
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


class Redo:
    """Outcome of a batch rolled back to be moved the generic way."""


#: What a batch's last step returns instead of its counts when it must be redone.
REDO = Redo()


def delete_and_commit(held: Held, delete: Callable[[], int], hook: Callable[[str], None],
                      table_name: str, sops: "SourceOps", *, redo: bool = True) -> int | Redo:
    """A batch's last step: ``delete()`` its keys and COMMIT its source transaction (after its
    copies are committed; for an in-server move, with them). Returns what ``delete()`` did.

    With ``redo``, a lock conflict with the batch beside it rolls this one back (its rows stay
    in the source) and returns REDO; the portable protocol then moves it alone. Without, the
    conflict fails the batch like any other database error.
    """
    try:
        try:
            deleted = delete()
        except sa.exc.DBAPIError as exc:
            if redo and sops.is_lock_conflict(exc):
                log.info("batch of '%s' met a lock conflict (%s); moving it again alone",
                         table_name, sops.explain(exc))
                held.trans.rollback()
                return REDO
            raise DatabaseError("source", sops.explain(exc)) from exc
        hook("after_source_delete")
        try:
            held.trans.commit()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError("source", sops.explain(exc)) from exc
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
    (None: nothing left; :data:`REDO`: it met a lock conflict and rolled back — the batch is
    then moved the generic way once nothing else is in flight). ``hand_on(held)`` (here) takes the batch on and returns the
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
            held, pending = pending.result(), None  # the read of the batch after ``after``
            read_redo = held is REDO
            if read_redo:
                held = None
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
            if read_redo:  # after every batch in flight, which it follows
                redo.append(after)
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


def open_slots(sops: "SourceOps", sconn: sa.Connection) -> tuple[list[Slot], Callable[[], None]]:
    """The run's source connection and a second, prepared one, as slots; and how to close them."""
    extra = sops.connect()
    try:
        undo = sops.prepare(extra)
        for conn in (sconn, extra):
            sops.prepare_overlapped(conn)
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


__all__ = ["Held", "InFlight", "REDO", "Redo", "Slot", "delete_and_commit", "open_slots", "run_batches"]
