"""In-server moves (MariaDB): source and archive are databases of one server, so a batch goes
from the source table into ``archived_rows`` without leaving the server.

Each batch is ONE transaction on a source connection (both tables are InnoDB on the same
server, so its commit is atomic: after a crash every row of the batch is in the source or
in the archive, never in both and never in neither):

1. lock: ``SELECT pk … ORDER BY pk LIMIT n FOR UPDATE`` through the primary key locks the
   batch's n rows (their keys come back as one text);
2. ``INSERT INTO <archive db>.archived_rows … SELECT`` the rows of that key range that
   match the policy, each row's payload written by the server exactly as the generic
   encoder writes it (:mod:`.source`); it must insert exactly n rows (the locked ones:
   a row that came to match in the range since step 1 makes it more, and the batch is
   redone by key);
3. ``DELETE`` those n keys, through the primary key (:meth:`.source.MySQLSourceOps.delete_tail`);
   it must delete exactly n rows;
4. COMMIT — or, when a count is off, ROLLBACK of the whole batch.

A table with child tables (a tree: one relation into each, no reference that could hold a
row back, each keyed by one integer column) moves its objects the same way: step 1 also
locks the rows of each child table under the n keys (``SELECT count(*) … FOR UPDATE``),
step 2 copies them after the roots, each linked to its root's archived row and dated by it
(``root_id``, ``depth``), and step 3 deletes them first, deepest first — each count exactly
the rows locked.

The locked rows cannot change between steps 1 and 3, so each deleted row's copy is its
current value. Sessions run READ COMMITTED (:meth:`.source.MySQLSourceOps.prepare_overlapped`):
step 2 is a consistent read and takes no lock (it does not wait for the next batch's
first row, as a locking range scan would), and step 3 deletes by key. The next batch is
locked on a second connection while this one is copied, and steps 2–4 run on each
connection's own thread
(:mod:`archiver.engine.pipeline`): the server inserts one batch while it deletes the one before. A batch
whose INSERT fails — a value the server cannot render leaves a NULL payload, refused in
strict mode; a key archived already is a duplicate — is rolled back and moved by the
generic protocol (which upserts) instead.

Used only when a probe shows both connections reach the same server (a named lock taken
on one is seen held by it from the other), the source connection may write the archive
table, every table is InnoDB, the keys are one integer column and the server renders every
column of the payloads.
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import sqlalchemy as sa

from ...errors import DatabaseError, EngineError
from ...pipeline import REDO, Held, Redo, Slot, delete_and_commit, open_slots, run_batches
from ...objects import delete_under_roots, joins_to_root
from ...plan import TablePlan
from ...schema import archived_rows
from ..base import Mover
from .source import MySQLSourceOps
from .statements import force_primary_key

log = logging.getLogger(__name__)

#: The column list of an in-server INSERT … SELECT.
_COLUMNS = ("table_name", "source_pk", "payload", "row_date", "archived_at", "run_id")


@dataclass
class _Locked(Held):
    """A batch of ``n`` rows locked in ``trans`` on ``slot``; ``keys``: their keys as ``1,2,3``;
    ``children``: the rows of each child table under them, locked too."""

    keys: str = ""
    n: int = 0
    key_values: list[int] = field(default_factory=list)  # the keys as integers, for an object's child tables
    children: dict[str, int] = field(default_factory=dict)


_KEY_LIST = re.compile(r"-?[0-9]+(?:,-?[0-9]+)*")

#: A LIMIT above any batch (see the INSERT … SELECT).
_NO_LIMIT = 2**63 - 1


class InServerMove(Mover):
    """Moves one table's batches inside one MariaDB server (see the module docstring).

    Two source connections take turns, each with its own thread. While batch k is copied,
    deleted and committed on one of them, batch k+1 is locked on the other, so the server
    starts the next INSERT as soon as the last one ends (MariaDB runs one INSERT … SELECT
    into a table at a time: the AUTO-INC lock) and deletes on its other core meanwhile.
    """

    def __init__(self, sops: MySQLSourceOps, plan: TablePlan, slots: list[Slot], archive_table: sa.Table, payload: Any,
                 row_date: Any, now: datetime, run_id: int | None, hook: Callable[[str], None],
                 restore: Callable[[], None]) -> None:
        self.sops = sops
        self.plan = plan
        self.slots = slots
        self.hook = hook
        self._restore = restore
        pk = plan.pk[0]
        archived_at = now.astimezone(timezone.utc).replace(tzinfo=None)
        self._stmts: dict[str, Any] = {}
        for first in (True, False):
            # The batch's keys come back as one text (count, last, list): 10,000 ints as rows cost
            # more in Python than the rest of the batch; the DELETE takes the list as it is.
            where = [plan.predicate] if first else [plan.predicate, pk > sa.bindparam("k0")]
            locking = force_primary_key(sa.select(pk.label("k")).where(*where).order_by(pk)
                                        .limit(sa.bindparam("n")).with_for_update(), plan.table).subquery("locked")
            self._stmts["lock_first" if first else "lock_next"] = sa.select(
                sa.func.count(), sa.func.max(locking.c.k), sa.func.group_concat(locking.c.k))
        # The rows of the locked keys' range that match the policy, read without locks (READ
        # COMMITTED: a consistent read, so no wait on the next batch's rows). The batch's rows
        # are among them and cannot change; a row that came to match in the range since the
        # lock would make the count more than n, and the batch is then redone by key.
        for first in (True, False):
            where = [plan.predicate, pk <= sa.bindparam("k1")]
            if not first:
                where.append(pk > sa.bindparam("k0"))
            rows = sa.select(sa.literal(plan.table_name, sa.String), sa.cast(pk, sa.CHAR), payload, row_date,
                             sa.literal(archived_at, sa.DateTime()), sa.literal(run_id, sa.BigInteger)).where(*where)
            # Selected from a derived table that the server materializes (a LIMIT no batch reaches
            # keeps it from merging the subquery into the INSERT): it builds the payloads before
            # the first row is written and so before the AUTO-INC lock, i.e. while the other
            # connection's batch is still inserting (1M rows: 9.3-9.7 s vs 9.9-11.9 s merged).
            # A plain INSERT: a key archived already (a crash of the generic path) is a
            # duplicate-key error, and that batch is redone with the generic upsert.
            derived = force_primary_key(rows.limit(_NO_LIMIT), plan.table).subquery("batch")
            self._stmts["insert_first" if first else "insert_next"] = sa.insert(archive_table).from_select(
                list(_COLUMNS), sa.select(*derived.c))
        # The object's child tables (parents first): locked, copied and deleted with the batch's roots,
        # found from the roots' keys (bound as one list: the keys locked, never a range).
        self._members = []
        for name in plan.graph.members[1:]:
            roots = pk.in_(sa.bindparam("keys", expanding=True))
            chain = joins_to_root(plan, name)
            member = plan.members[name]
            self._members.append((
                name,
                sa.select(sa.func.count()).select_from(member.table).where(roots, *chain).with_for_update(),
                _copy_member(sops, plan, name, archive_table, roots, chain, archived_at, run_id),
                _delete_member(plan, name, roots),
            ))

    def probe(self) -> bool:
        """True when the source connection may run the copy (SELECT on the source table,
        INSERT and UPDATE on the archive table): the INSERT … SELECT over an empty range."""
        conn = self.slots[0].conn
        try:
            conn.execute(self._stmts["insert_next"], {"k0": 0, "k1": 0})
        except sa.exc.DBAPIError as exc:
            log.info("in-server moves of '%s' not used: %s", self.plan.table_name, self.sops.explain(exc))
            return False
        finally:
            conn.rollback()
        return True

    def run(self, stop_requested: Callable[[], bool], generic_batch: Callable[[tuple | None], tuple | None],
            committed: Callable[..., None], size: Callable[[], int]) -> None:
        """Move batches until none is left or ``stop_requested()`` (see :func:`.pipeline.run_batches`)."""
        self._size = size

        def counted(n_read: int, n_deleted: int, children: dict[str, int]) -> None:
            committed(n_read, n_deleted, children=children)

        run_batches(self.slots, self._lock, lambda held: held.slot.submit(self._copy_delete_commit, held),
                    stop_requested=stop_requested, generic_batch=generic_batch, committed=counted)

    def close(self) -> None:
        """Stop the threads, put the session settings back and close the extra connection."""
        self._restore()

    # --- one batch (each step on its slot's thread) ------------------------------------
    def _lock(self, slot: Slot, after: tuple | None) -> _Locked | Redo | None:
        conn, shape = slot.conn, ("first" if after is None else "next")
        limit = self._size()
        params = {"n": limit} if after is None else {"k0": after[0], "n": limit}
        trans = conn.begin()
        children: dict[str, int] = {}
        key_values: list[int] = []
        try:
            n, last, keys = conn.execute(self._stmts[f"lock_{shape}"], params).one()
            if n:
                # Integers from an integer key column, all of them (GROUP_CONCAT did not cut the text).
                if not isinstance(keys, str) or not _KEY_LIST.fullmatch(keys) or keys.count(",") + 1 != n:
                    raise EngineError(f"in-server move of '{self.plan.table_name}': the batch's key list did not "
                                      "read back")
                if self._members:  # the rows under the batch's roots, locked until the batch commits
                    key_values = [int(k) for k in keys.split(",")]
                    for name, lock, _copy, _delete in self._members:
                        children[name] = int(conn.execute(lock, {"keys": key_values}).scalar_one())
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            if self.sops.is_lock_conflict(exc):  # waited too long on a row: the batch goes alone, smaller
                return REDO
            raise DatabaseError("source", self.sops.explain(exc)) from exc
        except BaseException:
            trans.rollback()
            raise
        if not n:
            trans.rollback()
            return None
        self.hook("after_select")
        return _Locked(slot, trans, after, (int(last),), keys, int(n), key_values, children)

    def _copy_delete_commit(self, b: _Locked) -> tuple[int, int, dict[str, int]] | Redo:
        conn, trans = b.slot.conn, b.trans
        try:
            params = {"k1": b.last_key[0]} if b.after is None else {"k0": b.after[0], "k1": b.last_key[0]}
            try:
                copied = conn.execute(self._stmts["insert_first" if b.after is None else "insert_next"],
                                      params).rowcount
            except sa.exc.DBAPIError as exc:
                # A value the server cannot render (NULL payload), or a key archived already:
                # the generic path encodes such rows in Python and upserts. Anything else fails
                # there too, with its own error.
                log.info("in-server copy of a batch of '%s' failed (%s); moving it the generic way",
                         self.plan.table_name, self.sops.explain(exc))
                trans.rollback()
                return REDO
            if copied != b.n:  # a row came to match inside the range since the lock: redo by key
                log.info("in-server copy of a batch of '%s' found %d rows for %d locked; moving it the generic way",
                         self.plan.table_name, copied, b.n)
                trans.rollback()
                return REDO
            for name, _lock, copy, _delete in self._members:
                try:
                    copied = conn.execute(copy, {"keys": b.key_values}).rowcount
                except sa.exc.DBAPIError as exc:  # a value the server cannot render (NULL payload), ...
                    log.info("in-server copy of the '%s' rows of a batch of '%s' failed (%s); moving it the "
                             "generic way", name, self.plan.table_name, self.sops.explain(exc))
                    trans.rollback()
                    return REDO
                if copied != b.children[name]:  # never: they are locked
                    raise EngineError(f"in-server move of '{self.plan.table_name}': {copied} '{name}' rows "
                                      f"copied of {b.children[name]} locked; batch rolled back")
            self.hook("after_archive_insert")
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise

        def delete() -> int:
            if self._members:
                for name, _lock, _copy, delete_rows in reversed(self._members):  # deepest first
                    gone = conn.execute(delete_rows, {"keys": b.key_values}).rowcount
                    if gone != b.children[name]:
                        raise EngineError(f"in-server move of '{self.plan.table_name}': the DELETE of '{name}' "
                                          f"matched {gone} of {b.children[name]} locked rows; batch rolled back")
                self.hook("after_child_delete")
            deleted = self.sops.delete_key_text(conn, self.plan, b.keys, b.n)
            if deleted != b.n:  # rolled back: the batch stays in the source, its copies go too
                raise EngineError(f"in-server move of '{self.plan.table_name}': the DELETE matched {deleted} "
                                  f"of {b.n} locked rows; batch rolled back")
            return deleted

        outcome = delete_and_commit(b, delete, self.hook, self.plan.table_name, self.sops)
        return outcome if outcome is REDO else (b.n, b.n, {name: rows for name, rows in b.children.items() if rows})


def _copy_member(sops: MySQLSourceOps, plan: TablePlan, name: str, archive_table: sa.Table, roots: Any,
                 chain: list[Any], archived_at: datetime, run_id: int | None) -> Any:
    """INSERT … SELECT of ``name``'s rows under the batch's roots, each linked to its root's archived
    row (inserted just before, in the same transaction) and dated by it, as the generic path links them."""
    member = plan.members[name]
    layout = sops.layout(member.plan)
    root_copy = archive_table.alias("root_copy")
    root_pk = sa.cast(plan.pk[0], sa.CHAR).collate("utf8mb4_bin")  # as the archive's source_pk compares
    rows = sa.select(
        sa.literal(name, sa.String), sa.cast(member.pk[0], sa.CHAR), layout.items[layout.single_object],
        root_copy.c.row_date, sa.literal(archived_at, sa.DateTime()), sa.literal(run_id, sa.BigInteger),
        root_copy.c.id, sa.literal(len(chain), sa.Integer),
    ).where(roots, *chain, root_copy.c.table_name == plan.table_name, root_copy.c.source_pk == root_pk)
    return sa.insert(archive_table).from_select(list(_COLUMNS) + ["root_id", "depth"], rows)


def _delete_member(plan: TablePlan, name: str, roots: Any) -> Any:
    """The DELETE of ``name``'s rows under the batch's roots (the rows its lock and copy took): by
    the keys themselves for a child table that references the roots' key."""
    (edge,) = plan.graph.edges_into(name)
    if edge.parent == plan.graph.root and edge.parent_columns == (plan.pk[0].name,) and len(edge.columns) == 1:
        child = plan.members[name].table
        return sa.delete(child).where(child.c[edge.columns[0]].in_(sa.bindparam("keys", expanding=True)))
    return delete_under_roots(plan, name, [roots])


def _is_mariadb(engine: sa.Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb") and bool(getattr(engine.dialect, "is_mariadb", False))


def open_in_server_move(sops: MySQLSourceOps, plan: TablePlan, sconn: sa.Connection, aconn: sa.Connection,
                        archive: sa.Engine, *, now: datetime, run_id: int | None,
                        checkpoint: Callable[[str], None]) -> InServerMove | None:
    """An :class:`InServerMove` for this run when the source and archive allow it, else None.

    ``sconn`` is the run's (prepared) source connection; a second one is opened from
    ``sops`` (:func:`archiver.engine.pipeline.open_slots`). ``close()`` the move to release it.
    """
    if not (_is_mariadb(sconn.engine) and _is_mariadb(archive)):
        return None
    exprs = sops.server_row_exprs(plan)
    if exprs is None or not sops.renders_objects(plan):
        return None
    payload, row_date = exprs
    try:
        archive_db = same_server_database(sconn, aconn)
        if archive_db is None or not _innodb(sconn, archive_db, plan.graph.members):
            return None
    except sa.exc.DBAPIError as exc:
        log.info("in-server moves of '%s' not used: probe failed (%s)", plan.table_name, sops.explain(exc))
        _rollback_quietly(sconn, aconn)
        return None
    table = archived_rows.to_metadata(sa.MetaData(), schema=archive_db)
    slots, close_slots = open_slots(sops, sconn)
    undo: list[Callable[[], None]] = []
    try:
        for slot in slots:
            undo.append(_session_for_moves(slot.conn))
        move = InServerMove(sops, plan, slots, table, payload, row_date, now, run_id, checkpoint,
                            restore=lambda: _restore(undo, close_slots))
    except BaseException:
        _restore(undo, close_slots)
        raise
    if not move.probe():
        move.close()
        return None
    log.info("moving rows of '%s' inside the server", plan.table_name)
    return move


def _restore(undo: list[Callable[[], None]], close_slots: Callable[[], None]) -> None:
    """Put the sessions' settings back, then stop the slots' threads and close the extra connection."""
    try:
        for fn in undo:
            try:
                fn()
            except sa.exc.DBAPIError:  # the connection is gone: nothing to put back
                pass
    finally:
        close_slots()


def _rollback_quietly(*conns: sa.Connection) -> None:
    for conn in conns:
        try:
            conn.rollback()
        except sa.exc.DBAPIError:
            pass


def same_server_database(sconn: sa.Connection, aconn: sa.Connection) -> str | None:
    """The archive connection's database when both connections reach one server, else None.

    A named lock taken on the source connection must be seen, from the archive connection,
    held by the source connection's id: only one server can answer that.
    """
    token = f"archiver-probe-{secrets.token_hex(12)}"
    sid = sconn.execute(sa.select(sa.func.connection_id())).scalar()
    if sconn.execute(sa.select(sa.func.get_lock(token, 0))).scalar() != 1:
        sconn.rollback()
        return None
    try:
        holder = aconn.execute(sa.select(sa.func.is_used_lock(token))).scalar()
        archive_db = aconn.execute(sa.select(sa.func.database())).scalar()
    finally:
        sconn.execute(sa.select(sa.func.release_lock(token)))
        sconn.rollback()
        aconn.rollback()
    if holder is None or int(holder) != int(sid) or not archive_db:
        return None
    return str(archive_db)


def _innodb(sconn: sa.Connection, archive_db: str, tables: list[str]) -> bool:
    """The object's tables and the archive table are InnoDB (one transaction covers them)."""
    t = sa.table("TABLES", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"), sa.column("ENGINE"),
                 schema="information_schema")
    rows = sconn.execute(sa.select(t.c.TABLE_SCHEMA, t.c.TABLE_NAME, t.c.ENGINE).where(sa.or_(
        sa.and_(t.c.TABLE_SCHEMA == sa.func.database(), t.c.TABLE_NAME.in_(tables)),
        sa.and_(t.c.TABLE_SCHEMA == archive_db, t.c.TABLE_NAME == archived_rows.name)))).all()
    sconn.rollback()
    return len(rows) == len(tables) + 1 and all(str(r[2]).lower() == "innodb" for r in rows)


def _session_for_moves(conn: sa.Connection) -> Callable[[], None]:
    """Strict mode (a NULL payload is an error, never an empty string) and room for a batch's
    key list in GROUP_CONCAT for this connection; returns what puts the old values back."""
    conn.rollback()
    mode, concat_len = conn.execute(sa.select(sa.literal_column("@@SESSION.sql_mode"),
                                              sa.literal_column("@@SESSION.group_concat_max_len"))).one()
    modes = [m for m in str(mode or "").split(",") if m]
    if "STRICT_ALL_TABLES" not in modes:
        conn.execute(sa.text("SET SESSION sql_mode = :mode"), {"mode": ",".join(modes + ["STRICT_ALL_TABLES"])})
    # A batch's key list as text: up to 50,000 keys of up to 20 digits.
    conn.execute(sa.text("SET SESSION group_concat_max_len = :n"), {"n": 4 << 20})
    conn.commit()

    def restore() -> None:
        conn.rollback()
        conn.execute(sa.text("SET SESSION sql_mode = :mode, group_concat_max_len = :n"),
                     {"mode": str(mode or ""), "n": int(concat_len)})
        conn.commit()

    return restore


__all__ = ["InServerMove", "open_in_server_move"]
