"""In-server moves (SQLite): the archive connection ATTACHes the source file and copies each
batch, and the rows that move with it, with ``INSERT … SELECT``; no row passes through Python.

A batch, one after another (SQLite has one writer per file):

1. lock: on the run's source connection, ``BEGIN IMMEDIATE`` takes the source's write lock
   (nobody can change a source row until step 3 commits), then ``SELECT count(*), max(pk)``
   of the next ``n`` qualifying keys;
2. copy: on the archive connection, where the source file is attached (and only read),
   ``INSERT INTO archived_rows … SELECT`` the rows of that key range that qualify, each
   payload written by SQLite's ``json_object()`` exactly as the generic encoder writes it
   (:mod:`.source`) — a plain INSERT, or, when a key is archived already (a run stopped after
   a copy), the same with ``ON CONFLICT … DO UPDATE``, which replaces that copy;
   then, for each child table (parents first), its rows under those roots, each linked to
   its root's archived row and dated by it, as the generic path links them; and COMMIT —
   the archive file alone, synced (``synchronous = FULL``, as the generic path's archive
   connection). The roots copied must be exactly the ``n`` counted;
3. delete: on the source connection, ``DELETE`` each child table's rows under those roots,
   deepest first (exactly as many as were copied: no ``ON DELETE CASCADE`` is left to do
   anything), then the key range's qualifying roots (exactly ``n``), and COMMIT.

The source's write lock is held from before step 1's SELECT to step 3's COMMIT, and the copy
reads the last committed state of the source (WAL: a reader does not wait for a writer that
has written nothing), so each deleted row's committed copy is its current value. A crash
between steps 2 and 3 leaves the batch in both files; the next run copies it again (an upsert)
and deletes it. Each COMMIT covers one file: no transaction spans the two (SQLite does not
make a transaction across attached WAL files atomic).

A row SQLite cannot render as the generic encoder does leaves a NULL payload, which the
NOT NULL column refuses: that batch is rolled back and moved by the generic protocol, which
encodes it in Python. Used only when every table of the object has a single INTEGER primary
key and columns SQLite renders, each child table is reached by one relation (a tree) and no
reference can hold a row back, the root's date column is one whose UTC text SQLite writes,
and source and archive are two different files.
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
from ...objects import delete_under_roots, joins_to_root
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
            # root_id and depth take their defaults (NULL, 0), as in a generic upsert.
            columns = ["table_name", "source_pk", "payload", "row_date", "archived_at", "run_id"]
            for kind in ("copy", "upsert"):
                self._stmts[f"{kind}_{'first' if first else 'next'}"] = _insert(columns, rows, kind == "upsert")
                for name in plan.graph.members[1:]:
                    self._stmts[f"{kind}_{name}_{'first' if first else 'next'}"] = _copy_member(
                        sops, plan, name, in_range, now, run_id, kind == "upsert")
            self._stmts[f"delete_{'first' if first else 'next'}"] = sa.delete(plan.table).where(*in_range)
            for name in reversed(plan.graph.members[1:]):  # deepest first
                self._stmts[f"delete_{name}_{'first' if first else 'next'}"] = delete_under_roots(plan, name, in_range)

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[..., None], size: Callable[[], int]) -> None:
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
            n, children = outcome
            committed(n, n, children=children)
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

    def _copy(self, shape: str, params: dict[str, Any], n: int, children: dict[str, int]) -> None:
        """Copy the batch in one archive transaction and commit it: plain INSERTs, or, when a key is
        archived already (a run stopped between a copy and its DELETE), upserts that replace it.
        Raises IntegrityError when a payload is NULL, _Mismatch when the roots are not the ``n``."""
        for kind in ("copy", "upsert"):
            try:
                with self.copier.begin():
                    copied = self.copier.execute(self._stmts[f"{kind}_{shape}"], params).rowcount
                    if copied != n:  # never: the write lock froze the range (rolled back, then moved by keys)
                        raise _Mismatch(copied)
                    for name in self.plan.graph.members[1:]:
                        children[name] = self.copier.execute(self._stmts[f"{kind}_{name}_{shape}"], params).rowcount
                return
            except sa.exc.IntegrityError:
                if kind == "upsert":
                    raise

    def _copy_delete_commit(self, b: _Locked) -> tuple[int, dict[str, int]] | Redo:
        """Copy the batch (its roots, then each child table's rows under them) and commit the archive;
        then delete them, deepest first, and commit the source. (rows, child rows by table) or REDO."""
        shape, params = "first" if b.after is None else "next", self._params(b)
        children: dict[str, int] = {}
        try:
            try:
                self._copy(shape, params, b.n, children)
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
            conn = self.slot.conn
            if children:
                for name in reversed(self.plan.graph.members[1:]):
                    deleted = conn.execute(self._stmts[f"delete_{name}_{shape}"], params).rowcount
                    if deleted != children[name]:
                        raise EngineError(f"in-server move of '{self.plan.table_name}': the DELETE of '{name}' "
                                          f"matched {deleted} of {children[name]} copied rows; batch rolled back")
                self.hook("after_child_delete")
            deleted = conn.execute(self._stmts[f"delete_{shape}"], params).rowcount
            if deleted != b.n:  # rolled back: the rows stay in the source beside their committed copies
                raise EngineError(f"in-server move of '{self.plan.table_name}': the DELETE matched {deleted} "
                                  f"of {b.n} locked rows; batch rolled back")
            return deleted

        outcome = delete_and_commit(b, delete, self.hook, self.plan.table_name, self.sops, redo=False)
        return outcome if outcome is REDO else (b.n, {name: rows for name, rows in children.items() if rows})


def _insert(columns: list[str], rows: sa.Select, upsert: bool) -> Any:
    """INSERT INTO the archive's archived_rows … SELECT ``rows`` of the attached source; with ``upsert``,
    a key archived already gets the columns a generic upsert replaces."""
    insert = sqlite_dialect.insert(_TARGET).from_select(columns, rows)
    if upsert:
        insert = insert.on_conflict_do_update(index_elements=[_TARGET.c.table_name, _TARGET.c.source_pk],
                                              set_={c: insert.excluded[c] for c in ArchiveOps.REPLACED})
    return insert.execution_options(schema_translate_map={None: SOURCE_SCHEMA})


def _copy_member(sops: SQLiteSourceOps, plan: TablePlan, name: str, in_range: list[Any], now: datetime,
                 run_id: int | None, upsert: bool) -> Any:
    """The INSERT (``upsert``: or replace) of ``name``'s rows under the batch's roots, each linked to its
    root's archived row (just written in the same transaction) and dated by it, as the generic path
    links them."""
    member = plan.members[name]
    layout = sops.layout(member.plan)
    root_copy = _TARGET.alias("root_copy")
    chain = joins_to_root(plan, name)
    rows = sa.select(
        sa.literal(name, sa.String), sa.cast(member.pk[0], sa.Text), layout.items[layout.single_object],
        root_copy.c.row_date, sa.literal(row_date_text(now), sa.String), sa.literal(run_id, sa.Integer),
        root_copy.c.id, sa.literal(len(chain), sa.Integer),
    ).where(*in_range, *chain, root_copy.c.table_name == plan.table_name,
            root_copy.c.source_pk == sa.cast(plan.pk[0], sa.Text))
    return _insert(["table_name", "source_pk", "payload", "row_date", "archived_at", "run_id", "root_id", "depth"],
                   rows, upsert)


def source_file(engine: sa.Engine) -> str | None:
    """The source's database file, when it is a plain file (not in memory, not a URI)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:") or engine.url.query.get("uri"):
        return None
    return os.path.abspath(database) if os.path.isfile(database) else None


def movable(sops: SQLiteSourceOps, plan: TablePlan) -> bool:
    """Whether SQL alone can copy this table's objects exactly as the generic path archives them
    (:meth:`~..serverjson.ServerJsonSourceOps.renders_objects`), the root's row date included."""
    return sops.renders_objects(plan) and sops.layout(plan).row_date_text is not None


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
