"""In-server moves (MariaDB): source and archive are databases of one server, so a batch goes
from the source table into ``archived_rows`` without leaving the server.

Each batch is ONE transaction on a source connection (both tables are InnoDB on the same
server, so its commit is atomic: after a crash every row of the batch is in the source or
in the archive, never in both and never in neither):

1. lock: ``SELECT pk … ORDER BY pk LIMIT 1 OFFSET n-1 FOR UPDATE`` through the primary key
   finds the batch's last key and locks the batch's rows (REPEATABLE READ: the gaps too);
2. ``INSERT INTO <archive db>.archived_rows … SELECT`` the same range, each row's payload
   written by the server exactly as the generic encoder writes it (:mod:`.fast_mysql`),
   ``ON DUPLICATE KEY UPDATE``;
3. ``DELETE`` the same range; it must delete exactly n rows or the transaction rolls back;
4. COMMIT.

Steps 2 and 3 read the range with ``LIMIT n``, so they stop at the batch's last row and
never lock the next batch's first one. Steps 3–4 of a batch run in a worker thread while
steps 1–2 of the next batch run on a second connection: the server deletes and inserts on
both cores. A batch whose INSERT fails (a value the server cannot render leaves a NULL
payload, refused in strict mode) is rolled back and moved by the generic protocol instead.

Used only when a probe shows both connections reach the same server (a named lock taken
on one is seen held by it from the other), the source connection may write the archive
table, both tables are InnoDB, the key is one integer column and the server renders every
column of the payload.
"""
from __future__ import annotations

import logging
import secrets
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from .dialects import force_primary_key
from .errors import DatabaseError, EngineError, dbapi_reason
from .plan import TablePlan
from .schema import archived_rows

log = logging.getLogger(__name__)

#: The column list of an in-server INSERT … SELECT.
_COLUMNS = ("table_name", "source_pk", "payload", "row_date", "archived_at", "run_id")


class _Slot:
    """A source connection and the one thread that runs its statements, in order."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archiver-move")


@dataclass
class _Locked:
    """A batch whose rows are locked in ``trans`` on ``slot``: keys in (after, last], n rows."""

    slot: _Slot
    trans: sa.RootTransaction
    after: tuple | None
    last: Any
    n: int


class _Fallback:
    """Marker: this batch goes through the generic protocol."""


FALLBACK = _Fallback()


@dataclass(frozen=True)
class _Redo:
    """A batch (keys after ``after``) to move the generic way."""

    after: tuple | None


def _side(side: str, exc: sa.exc.DBAPIError) -> DatabaseError:
    return DatabaseError(side, dbapi_reason(exc))


class InServerMove:
    """Moves one table's batches inside one MariaDB server (see the module docstring).

    Two source connections take turns, each with its own thread. While batch k is copied,
    deleted and committed on one of them, batch k+1 is locked on the other, so the server
    starts the next INSERT as soon as the last one ends (MariaDB runs one INSERT … SELECT
    into a table at a time: the AUTO-INC lock) and deletes on its other core meanwhile.
    """

    def __init__(self, plan: TablePlan, slots: list[_Slot], archive_table: sa.Table, payload: Any,
                 row_date: Any, now: datetime, run_id: int | None, hook: Callable[[str], None],
                 restore: Callable[[], None]) -> None:
        self.plan = plan
        self.slots = slots
        self.hook = hook
        self._restore = restore
        pk = plan.pk[0]
        self._limit = plan.spec.batch_size
        archived_at = now.astimezone(timezone.utc).replace(tzinfo=None)
        lower, upper = pk > sa.bindparam("k0"), pk <= sa.bindparam("k1")
        self._stmts: dict[str, Any] = {}
        for first in (True, False):
            where = [plan.predicate] if first else [plan.predicate, lower]
            shape = "first" if first else "next"
            locking = sa.select(pk).where(*where).order_by(pk).with_for_update()
            self._stmts[f"boundary_{shape}"] = force_primary_key(
                locking.limit(1).offset(sa.bindparam("offset")), plan.table)
            self._stmts[f"rest_{shape}"] = force_primary_key(locking.limit(sa.bindparam("n")), plan.table)
            rows = sa.select(sa.literal(plan.table_name, sa.String), sa.cast(pk, sa.CHAR), payload, row_date,
                             sa.literal(archived_at, sa.DateTime()), sa.literal(run_id, sa.BigInteger)) \
                .where(*where, upper).order_by(pk).limit(sa.bindparam("n"))
            # Selected from a derived table: the server builds the payloads while it materializes it,
            # before the first row is written and so before the AUTO-INC lock, i.e. while the other
            # connection's batch is still inserting (1M rows: 5-8% faster pipelined, a little
            # slower alone).
            derived = force_primary_key(rows, plan.table).subquery("batch")
            insert = mysql.insert(archive_table).from_select(list(_COLUMNS), sa.select(*derived.c))
            self._stmts[f"insert_{shape}"] = insert.on_duplicate_key_update(
                {c: insert.inserted[c] for c in ("payload", "row_date", "archived_at", "run_id")})
            # The age/criteria predicate wrapped in CASE: MariaDB cannot use an index on the date
            # column for it, so the DELETE walks the primary-key range (DELETE takes no index hint).
            only_pk = sa.case((plan.predicate, 1), else_=0) == 1
            self._stmts[f"delete_{shape}"] = sa.and_(only_pk, upper) if first else sa.and_(only_pk, lower, upper)
        self._deletes: dict[tuple[str, int], sa.Delete] = {}

    def probe(self) -> bool:
        """True when the source connection may run the copy (SELECT on the source table,
        INSERT and UPDATE on the archive table): the INSERT … SELECT over an empty range."""
        conn = self.slots[0].conn
        try:
            conn.execute(self._stmts["insert_next"], {"k0": 0, "k1": 0, "n": 1})
        except sa.exc.DBAPIError as exc:
            log.info("in-server moves of '%s' not used: %s", self.plan.table_name, dbapi_reason(exc))
            return False
        finally:
            conn.rollback()
        return True

    # --- the loop --------------------------------------------------------------------
    def run(self, after: tuple | None, stop_requested: Callable[[], bool],
            generic_batch: Callable[[tuple | None], tuple | None], committed: Callable[[int], None]) -> None:
        """Move batches after ``after`` until none is left or ``stop_requested()``.

        ``committed(n)`` is called (in this thread) for every batch committed here, in
        order; ``generic_batch(after)`` moves one batch the generic way and returns its
        last key (None: nothing left). Nothing is in flight when this returns or raises.
        """
        in_flight: deque[tuple[Future, tuple | None]] = deque()
        pending: Future | None = None  # the next batch's lock
        locked: _Locked | None = None  # a batch locked and not handed on yet
        turn = 0
        try:
            while True:
                if pending is None:
                    pending = self.slots[turn].thread.submit(self._lock, self.slots[turn], after)
                locked, pending = pending.result(), None
                redo = self._report(in_flight, committed, wait=False)
                stop = False
                if redo is None and locked is not None:
                    stop = stop_requested()
                    if not stop:
                        turn = (turn + 1) % len(self.slots)
                        after = (locked.last,)
                        pending = self.slots[turn].thread.submit(self._lock, self.slots[turn], after)
                        in_flight.append((locked.slot.thread.submit(self._copy_delete_commit, locked),
                                          locked.after))
                        locked = None
                        continue
                # Leaving the pipeline: nothing left, a stop, or a batch the server could not copy.
                if locked is not None:
                    self._rollback(locked)
                    locked = None
                later = self._report(in_flight, committed, wait=True)  # nothing may run beside the generic path
                redo = redo or later
                if redo is None or stop:
                    break
                # Move that batch the generic way and go on after it (rows moved since are gone).
                after = generic_batch(redo.after)
                if after is None:
                    break
        except BaseException:
            self._abandon(locked, pending, in_flight, committed)
            raise

    def close(self) -> None:
        """Stop the threads, put the session settings back and close the extra connection."""
        for slot in self.slots:
            slot.thread.shutdown(wait=True)
        self._restore()

    # --- one batch (each step on its slot's thread) ------------------------------------
    def _lock(self, slot: _Slot, after: tuple | None) -> _Locked | None:
        conn, shape = slot.conn, ("first" if after is None else "next")
        k0 = {} if after is None else {"k0": after[0]}
        trans = conn.begin()
        try:
            last = conn.execute(self._stmts[f"boundary_{shape}"], {**k0, "offset": self._limit - 1}).scalar()
            n = self._limit
            if last is None:  # fewer than a batch left: lock them all
                keys = conn.execute(self._stmts[f"rest_{shape}"], {**k0, "n": self._limit}).scalars().all()
                if not keys:
                    trans.rollback()
                    return None
                n, last = len(keys), keys[-1]
        except sa.exc.DBAPIError as exc:
            trans.rollback()
            raise _side("source", exc) from exc
        except BaseException:
            trans.rollback()
            raise
        self.hook("after_select")
        return _Locked(slot, trans, after, last, n)

    def _copy_delete_commit(self, b: _Locked) -> int | _Fallback:
        conn, trans = b.slot.conn, b.trans
        first = b.after is None
        params = {"k1": b.last} if first else {"k0": b.after[0], "k1": b.last}
        try:
            try:
                copied = conn.execute(self._stmts["insert_first" if first else "insert_next"],
                                      {**params, "n": b.n}).rowcount
            except sa.exc.DBAPIError as exc:
                # Usually a value the server cannot render (NULL payload): the generic path
                # encodes such rows in Python. Anything else fails there too, with its own error.
                log.info("in-server copy of a batch of '%s' failed (%s); moving it the generic way",
                         self.plan.table_name, dbapi_reason(exc))
                trans.rollback()
                return FALLBACK
            # Each row read counts 1 (inserted, or found unchanged) or 2 (updated): fewer than n
            # means rows were not copied. The DELETE's exact count below is the full check.
            if copied < b.n:
                raise EngineError(f"in-server copy of '{self.plan.table_name}' took {copied} of {b.n} rows")
            self.hook("after_archive_insert")
            try:
                deleted = conn.execute(self._delete(first, b.n), params).rowcount
            except sa.exc.DBAPIError as exc:
                raise _side("source", exc) from exc
            if deleted != b.n:  # rolled back below: the batch stays in the source, its copies go too
                raise EngineError(f"in-server move of '{self.plan.table_name}': the DELETE matched {deleted} "
                                  f"of {b.n} locked rows; batch rolled back")
            self.hook("after_source_delete")
            try:
                trans.commit()
            except sa.exc.DBAPIError as exc:
                raise _side("source", exc) from exc
            return b.n
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise

    def _delete(self, first: bool, n: int) -> sa.Delete:
        key = ("first" if first else "next", n)
        stmt = self._deletes.get(key)
        if stmt is None:
            where = self._stmts[f"delete_{key[0]}"]
            # LIMIT n: stop at the batch's last row instead of reading (and locking) the next one.
            stmt = self._deletes[key] = sa.delete(self.plan.table).where(where).with_dialect_options(mysql_limit=n)
        return stmt

    def _rollback(self, b: _Locked) -> None:
        b.slot.thread.submit(b.trans.rollback).result()

    # --- batches in flight -------------------------------------------------------------
    @staticmethod
    def _report(in_flight: deque[tuple[Future, tuple | None]], committed: Callable[[int], None],
                wait: bool) -> _Redo | None:
        """Report finished batches in order (all of them when ``wait``); raises a batch's error.

        Returns the first batch that needs the generic path, if any.
        """
        redo: _Redo | None = None
        while in_flight and (wait or in_flight[0][0].done()):
            future, after = in_flight.popleft()
            outcome = future.result()
            if outcome is FALLBACK:
                redo = redo or _Redo(after)
            else:
                committed(outcome)
        return redo

    def _abandon(self, locked: _Locked | None, pending: Future | None,
                 in_flight: deque[tuple[Future, tuple | None]], committed: Callable[[int], None]) -> None:
        """After a failure: let every batch in flight finish (or fail), roll back locks not handed on."""
        for future, _after in in_flight:
            try:
                outcome = future.result()
                if outcome is not FALLBACK:
                    committed(outcome)
            except BaseException:  # noqa: BLE001 - the first failure is the one raised
                pass
        in_flight.clear()
        held = [locked]
        if pending is not None:
            try:
                held.append(pending.result())
            except BaseException:  # noqa: BLE001 - it failed: nothing to roll back
                pass
        for batch in held:
            if batch is not None:
                try:
                    self._rollback(batch)
                except BaseException:  # noqa: BLE001 - closing the connection rolls it back anyway
                    pass


def _is_mariadb(engine: sa.Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb") and bool(getattr(engine.dialect, "is_mariadb", False))


def open_in_server_move(sops: Any, plan: TablePlan, sconn: sa.Connection, aconn: sa.Connection,
                        archive: sa.Engine, *, now: datetime, run_id: int | None,
                        checkpoint: Callable[[str], None]) -> InServerMove | None:
    """An :class:`InServerMove` for this run when the source and archive allow it, else None.

    ``sconn`` is the run's (prepared) source connection; a second one is opened from
    ``sops``. Raises DatabaseError only when the source connection itself fails.
    """
    if not (_is_mariadb(sconn.engine) and _is_mariadb(archive)):
        return None
    exprs = getattr(sops, "server_row_exprs", lambda _plan: None)(plan)
    if exprs is None:
        return None
    payload, row_date = exprs
    try:
        archive_db = _same_server_database(sconn, aconn)
        if archive_db is None or not _innodb(sconn, archive_db, plan.table_name):
            return None
    except sa.exc.DBAPIError as exc:
        log.info("in-server moves of '%s' not used: probe failed (%s)", plan.table_name, dbapi_reason(exc))
        _rollback_quietly(sconn, aconn)
        return None
    table = archived_rows.to_metadata(sa.MetaData(), schema=archive_db)
    extra = sops.connect()
    slots = [_Slot(sconn), _Slot(extra)]
    undo: list[Callable[[], None]] = []
    try:
        undo_extra = sops.prepare(extra)
        for slot in slots:
            undo.append(_session_for_moves(slot.conn))
        move = InServerMove(plan, slots, table, payload, row_date, now, run_id, checkpoint,
                            restore=lambda: _restore(undo, undo_extra, extra))
        if not move.probe():
            move.close()
            return None
        return move
    except BaseException:
        _restore(undo, None, extra)
        raise


def _restore(undo: list[Callable[[], None]], undo_extra: Callable[[], None] | None, extra: sa.Connection) -> None:
    try:
        for fn in undo:
            try:
                fn()
            except sa.exc.DBAPIError:  # the connection is gone: nothing to put back
                pass
        if undo_extra is not None:
            undo_extra()
    finally:
        extra.close()


def _rollback_quietly(*conns: sa.Connection) -> None:
    for conn in conns:
        try:
            conn.rollback()
        except sa.exc.DBAPIError:
            pass


def _same_server_database(sconn: sa.Connection, aconn: sa.Connection) -> str | None:
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


def _innodb(sconn: sa.Connection, archive_db: str, table_name: str) -> bool:
    """Both tables are InnoDB (one transaction covers them)."""
    t = sa.table("TABLES", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"), sa.column("ENGINE"),
                 schema="information_schema")
    rows = sconn.execute(sa.select(t.c.TABLE_SCHEMA, t.c.TABLE_NAME, t.c.ENGINE).where(sa.or_(
        sa.and_(t.c.TABLE_SCHEMA == sa.func.database(), t.c.TABLE_NAME == table_name),
        sa.and_(t.c.TABLE_SCHEMA == archive_db, t.c.TABLE_NAME == archived_rows.name)))).all()
    sconn.rollback()
    return len(rows) == 2 and all(str(r[2]).lower() == "innodb" for r in rows)


def _session_for_moves(conn: sa.Connection) -> Callable[[], None]:
    """REPEATABLE READ (range locks hold their gaps; SQLAlchemy resets it when the connection
    goes back to the pool) and strict mode (a NULL payload is an error, never an empty
    string) for this connection; returns what puts the old sql_mode back."""
    conn.rollback()
    conn.execution_options(isolation_level="REPEATABLE READ")
    mode = conn.execute(sa.select(sa.literal_column("@@SESSION.sql_mode"))).scalar() or ""
    modes = [m for m in str(mode).split(",") if m]
    if "STRICT_ALL_TABLES" not in modes:
        conn.execute(sa.text("SET SESSION sql_mode = :mode"), {"mode": ",".join(modes + ["STRICT_ALL_TABLES"])})
    conn.commit()

    def restore() -> None:
        conn.rollback()
        conn.execute(sa.text("SET SESSION sql_mode = :mode"), {"mode": str(mode)})
        conn.commit()

    return restore


__all__ = ["InServerMove", "open_in_server_move"]
