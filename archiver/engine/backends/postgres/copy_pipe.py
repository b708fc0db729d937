"""PostgreSQL → PostgreSQL in bytes: each batch goes COPY to COPY between the two servers.

Each batch goes from ``COPY (SELECT … FOR UPDATE) TO STDOUT`` on its source
connection straight into ``COPY archived_rows FROM STDIN`` on the archive, the
lines written by the source server exactly as ``archived_rows`` takes them
(payload built by the server, as in :mod:`.source`); the keys are read off the
lines for the DELETE. The archive commits only once the source COPY has ended
well and the counts agree; a batch the archive refuses (a key archived already,
a value the server cannot render) is rolled back and redone the portable way.
The DELETE and COMMIT overlap the next batch (:mod:`archiver.engine.pipeline`).
"""
from __future__ import annotations

import os
import re
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa

from ...errors import DatabaseError, EngineError, LockConflict
from ...pipeline import REDO, Held, Redo, Slot, delete_and_commit, run_batches
from ...plan import TablePlan
from ..base import Mover
from .archive import PostgresArchiveOps
from .source import PostgresSourceOps


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
    limit: int = 0  # the batch's row count, asked before its transaction began


class CopyPipe(Mover):
    """Moves a run's batches COPY to COPY (see the module docstring)."""

    def __init__(self, sops: PostgresSourceOps, aops: PostgresArchiveOps, plan: TablePlan, slots: list[Slot],
                 aconn: sa.Connection, *,
                 now: datetime, run_id: int | None, hook: Callable[[str], None]) -> None:
        self.sops, self.aops, self.plan = sops, aops, plan
        self.slots, self.aconn = slots, aconn
        self.now, self.run_id, self.hook = now, run_id, hook

    @staticmethod
    def usable(sops: PostgresSourceOps, aops: PostgresArchiveOps, plan: TablePlan, aconn: sa.Connection,
               now: datetime) -> bool:
        """Both ends copy on these connections and the source server writes whole records of this table."""
        return aops.copies(aconn) and sops.copy_out_statement(plan, None, 1, now, None) is not None

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[[int, int], None], size: Callable[[], int]) -> None:
        self._size = size
        run_batches(self.slots, self._read, self._hand_on, stop_requested=stop_requested,
                    generic_batch=generic_batch, committed=committed, read_ahead=False)

    def _read(self, slot: Slot, after: tuple | None) -> _Piped | None:
        limit = self._size()  # may wait (a throttle's pause): before the transaction begins
        trans = slot.conn.begin()
        try:
            found = self.sops.any_left(slot.conn, self.plan, after)
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        if not found:
            trans.rollback()
            return None
        return _Piped(slot, trans, after, None, limit=limit)

    def _hand_on(self, held: _Piped) -> Future:
        sql, params = self.sops.copy_out_statement(self.plan, held.after, held.limit, self.now,
                                                   self.run_id)
        rfd, wfd = os.pipe()
        reader, writer = os.fdopen(rfd, "rb", buffering=1 << 16), os.fdopen(wfd, "wb", buffering=1 << 16)
        sink = _KeySink(writer)
        produced = held.slot.submit(self._produce, held, sql, params, sink, writer)
        try:
            return self._copy_through(held, reader, produced, sink)
        except LockConflict:  # the source waited too long on a row: nothing committed, redo it alone
            return held.slot.submit(self._give_up, held)
        finally:
            reader.close()

    def _copy_through(self, held: _Piped, reader: Any, produced: Future, sink: _KeySink) -> Future:
        """COPY the source's lines into the archive and commit it, then DELETE on the batch's slot."""
        with self.aconn.begin():
            try:
                try:
                    copied = self.aops.copy_in(self.aconn, reader)
                except sa.exc.DBAPIError as exc:
                    raise DatabaseError("archive", self.aops.explain(exc)) from exc
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
        self.hook("after_archive_commit")
        return held.slot.submit(self._delete, held)

    def _produce(self, held: _Piped, sql: str, params: dict[str, Any], sink: _KeySink, writer: Any) -> None:
        try:
            self.sops.copy_out(held.slot.conn, sql, params, sink)
        except sa.exc.DBAPIError as exc:
            error = LockConflict if self.sops.is_lock_conflict(exc) else DatabaseError
            raise error("source", self.sops.explain(exc)) from exc
        finally:
            writer.close()
        self.hook("after_select")  # the batch's rows are read and locked

    def _give_up(self, held: _Piped) -> Redo:
        held.trans.rollback()
        return REDO

    def _delete(self, held: _Piped) -> tuple[int, int] | Redo:
        deleted = delete_and_commit(held, lambda: self.sops.delete_key_text(held.slot.conn, self.plan, held.keys),
                                    self.hook, self.plan.table_name, self.sops)
        return deleted if deleted is REDO else (held.n, deleted)
