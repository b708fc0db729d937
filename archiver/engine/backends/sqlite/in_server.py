"""In-server moves (SQLite): the archive connection ATTACHes the source file and copies each
batch with one ``INSERT … SELECT``; no row passes through Python.

A batch, one after another (SQLite has one writer per file):

1. lock: on the run's source connection, ``BEGIN IMMEDIATE`` takes the source's write lock
   (nobody can change a source row until step 3 commits), then ``SELECT count(*), max(pk)``
   of the next ``n`` qualifying keys;
2. copy: on the archive connection, where the source file is attached read-only in effect
   (nothing writes to it there), ``INSERT INTO archived_rows … SELECT`` the rows of that key
   range that qualify, each payload written by SQLite's ``json_object()`` exactly as the
   generic encoder writes it (:mod:`.source`), ``ON CONFLICT … DO UPDATE`` (a rerun after a
   crash replaces its copy), and COMMIT — the archive file alone, synced (``synchronous =
   FULL``, as the generic path's archive connection). It must copy exactly the ``n`` rows;
3. delete: on the source connection, ``DELETE`` the same key range's qualifying rows (exactly
   ``n``) and COMMIT.

The source's write lock is held from before step 1's SELECT to step 3's COMMIT, and the copy
reads the last committed state of the source (WAL: a reader does not wait for a writer that
has written nothing), so each deleted row's committed copy is its current value. A crash
between steps 2 and 3 leaves the batch in both files; the next run copies it again (an upsert)
and deletes it. Each COMMIT covers one file: no transaction spans the two (SQLite does not
make a transaction across attached WAL files atomic).

A row SQLite cannot render as the generic encoder does leaves a NULL payload, which the
NOT NULL column refuses: that batch is rolled back and moved by the generic protocol, which
encodes it in Python. Used only for a table without child tables or referrers, with a single
INTEGER primary key, every column rendered in SQL and a date column whose UTC text SQLite
writes, when source and archive are two different files.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ...errors import DatabaseError, EngineError
from ...pipeline import REDO, Held, Redo, Slot, delete_and_commit
from ...plan import TablePlan
from ...schema import archived_rows
from ..base import ArchiveOps, Mover, row_date_text
from .connections import pragmas
from .source import SQLiteSourceOps

log = logging.getLogger(__name__)

#: The schema name the source file is attached under on the archive connection.
SOURCE_SCHEMA = "archiver_source"

#: The archive table, named in the archive connection's own (main) schema: the statements run
#: with every unqualified table (the source's) translated to the attached source schema.
_TARGET = archived_rows.to_metadata(sa.MetaData(), schema="main")


@dataclass
class _Locked(Held):
    """``n`` qualifying rows after ``after`` up to ``last_key``, under the source's write lock."""

    n: int = 0


class AttachedMove(Mover):
    """Moves one table's batches with the source file attached to the archive connection."""

    def __init__(self, sops: SQLiteSourceOps, plan: TablePlan, sconn: sa.Connection, aconn: sa.Connection,
                 now: datetime, run_id: int | None, hook: Callable[[str], None],
                 restore: Callable[[], None]) -> None:
        self.sops, self.plan, self.hook = sops, plan, hook
        self.slot = Slot(sconn, inline=True)
        self.copier = aconn
        self._restore = restore
        pk = plan.pk[0]
        layout = sops.layout(plan)
        payload, row_date = layout.items[layout.single_object], layout.items[layout.row_date_text]
        self._stmts: dict[str, Any] = {}
        for first in (True, False):
            where = [plan.predicate] if first else [plan.predicate, pk > sa.bindparam("k0")]
            locked = sa.select(pk.label("k")).where(*where).order_by(pk).limit(sa.bindparam("n")).subquery("locked")
            self._stmts[f"lock_{'first' if first else 'next'}"] = sa.select(sa.func.count(), sa.func.max(locked.c.k))
            in_range = [plan.predicate, pk <= sa.bindparam("k1")] + ([] if first else [pk > sa.bindparam("k0")])
            rows = sa.select(sa.literal(plan.table_name, sa.String), sa.cast(pk, sa.Text), payload, row_date,
                             sa.literal(row_date_text(now), sa.String), sa.literal(run_id, sa.Integer)).where(*in_range)
            insert = sqlite_dialect.insert(_TARGET).from_select(
                ["table_name", "source_pk", "payload", "row_date", "archived_at", "run_id"], rows)
            # The columns a generic upsert replaces; root_id and depth take their defaults (NULL, 0).
            self._stmts[f"copy_{'first' if first else 'next'}"] = insert.on_conflict_do_update(
                index_elements=[_TARGET.c.table_name, _TARGET.c.source_pk],
                set_={c: insert.excluded[c] for c in ArchiveOps.REPLACED},
            ).execution_options(schema_translate_map={None: SOURCE_SCHEMA})
            self._stmts[f"delete_{'first' if first else 'next'}"] = sa.delete(plan.table).where(*in_range)

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[[int, int], None], size: Callable[[], int]) -> None:
        """Move batches one after another until none is left or ``stop_requested()``; a batch that
        cannot be copied in SQL goes the generic way (``generic_batch``)."""
        after: tuple | None = None
        while not stop_requested():
            locked = self._lock(after, size())
            if locked is None:
                return
            outcome = self._copy_delete_commit(locked)
            if outcome is REDO:
                after = generic_batch(after)
                if after is None:
                    return
                continue
            committed(*outcome)
            after = locked.last_key

    def close(self) -> None:
        """Detach the source and put the archive connection's settings back."""
        self._restore()

    def _params(self, b: _Locked) -> dict[str, Any]:
        return {"k1": b.last_key[0]} if b.after is None else {"k0": b.after[0], "k1": b.last_key[0]}

    def _lock(self, after: tuple | None, limit: int) -> _Locked | None:
        conn, shape = self.slot.conn, "first" if after is None else "next"
        trans = conn.begin()  # BEGIN IMMEDIATE: the source's write lock, held to this batch's COMMIT
        try:
            n, last = conn.execute(self._stmts[f"lock_{shape}"],
                                   {"n": limit} if after is None else {"n": limit, "k0": after[0]}).one()
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        except BaseException:
            trans.rollback()
            raise
        if not n:
            trans.rollback()
            return None
        self.hook("after_select")
        return _Locked(self.slot, trans, after, (last,), int(n))

    def _copy_delete_commit(self, b: _Locked) -> tuple[int, int] | Redo:
        shape = "first" if b.after is None else "next"
        try:
            try:
                with self.copier.begin():
                    copied = self.copier.execute(self._stmts[f"copy_{shape}"], self._params(b)).rowcount
                    if copied != b.n:  # never: the write lock froze the range (rolled back, then moved by keys)
                        raise _Mismatch(copied)
            except sa.exc.IntegrityError:  # a NULL payload: a value SQLite cannot render as the encoder does
                log.info("in-server copy of a batch of '%s' met a value to encode in Python; moving it the "
                         "generic way", self.plan.table_name)
                b.trans.rollback()
                return REDO
            except _Mismatch as exc:
                log.info("in-server copy of a batch of '%s' found %d rows for %d locked; moving it the generic way",
                         self.plan.table_name, exc.copied, b.n)
                b.trans.rollback()
                return REDO
            except sa.exc.DBAPIError as exc:
                raise DatabaseError("archive", self.sops.explain(exc)) from exc
            self.hook("after_archive_commit")
        except BaseException:
            if b.trans.is_active:
                b.trans.rollback()
            raise

        def delete() -> int:
            deleted = self.slot.conn.execute(self._stmts[f"delete_{shape}"], self._params(b)).rowcount
            if deleted != b.n:  # rolled back: the rows stay in the source beside their committed copies
                raise EngineError(f"in-server move of '{self.plan.table_name}': the DELETE matched {deleted} "
                                  f"of {b.n} locked rows; batch rolled back")
            return deleted

        outcome = delete_and_commit(b, delete, self.hook, self.plan.table_name, self.sops, redo=False)
        return outcome if outcome is REDO else (b.n, b.n)


class _Mismatch(Exception):
    def __init__(self, copied: int) -> None:
        super().__init__(copied)
        self.copied = copied


def source_file(engine: sa.Engine) -> str | None:
    """The source's database file, when it is a plain file (not in memory, not a URI)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:") or engine.url.query.get("uri"):
        return None
    return os.path.abspath(database) if os.path.isfile(database) else None


def movable(sops: SQLiteSourceOps, plan: TablePlan) -> bool:
    """Whether SQL alone can copy this table's rows exactly as the generic path archives them."""
    if not sops.fast_enabled or not plan.graph.trivial or len(plan.pk) != 1:
        return False
    if not isinstance(plan.pk[0].type, sa.Integer) or sops.key_column(plan.pk[0]) is not plan.pk[0]:
        return False
    layout = sops.layout(plan)
    return layout.single_object is not None and layout.row_date_text is not None


def open_in_server_move(sops: SQLiteSourceOps, plan: TablePlan, sconn: sa.Connection, aconn: sa.Connection,
                        *, now: datetime, run_id: int | None,
                        checkpoint: Callable[[str], None]) -> AttachedMove | None:
    """An :class:`AttachedMove` for this run when the source and archive allow it, else None.

    ``aconn`` (the run's archive connection, no transaction open) gets the source attached
    until the move is closed.
    """
    path = source_file(sconn.engine)
    if path is None or not movable(sops, plan):
        return None
    try:
        aconn.rollback()
        raw = aconn.connection.dbapi_connection
        raw.execute(f"ATTACH DATABASE ? AS {SOURCE_SCHEMA}", (path,))
    except Exception as exc:  # noqa: BLE001 - attached already, a file it cannot open: the generic path
        log.info("in-server moves of '%s' not used: %s", plan.table_name, sops.explain(exc))
        return None
    restore_pragmas = pragmas(aconn, synchronous=2)  # the copy's COMMIT is on disk before the DELETE
    # BEGIN DEFERRED: BEGIN IMMEDIATE would ask for the write lock of every attached file, the
    # source's too, which the source connection holds; the INSERT takes the archive's alone.
    begin = aconn.get_execution_options().get("sqlite_begin")
    aconn.execution_options(sqlite_begin="DEFERRED")

    def restore() -> None:
        try:
            aconn.execution_options(sqlite_begin=begin)
            restore_pragmas()
            aconn.connection.dbapi_connection.execute(f"DETACH DATABASE {SOURCE_SCHEMA}")
        except Exception:  # noqa: BLE001 - a connection that cannot detach is not given back to the pool
            aconn.invalidate()

    move = AttachedMove(sops, plan, sconn, aconn, now, run_id, checkpoint, restore)
    log.info("moving rows of '%s' inside SQLite (source attached to the archive)", plan.table_name)
    return move


__all__ = ["AttachedMove", "SOURCE_SCHEMA", "open_in_server_move"]
