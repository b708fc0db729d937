"""One runner per table: a lock in the archive database that dies with its holder.

Archive, purge and restore runs of one table take the same lock, so they exclude
each other across threads, processes and hosts. How the lock is held depends on
what the archive database can do (``Capabilities.advisory_locks``):

* **Advisory locks** (PostgreSQL ``pg_try_advisory_lock``, MySQL/MariaDB
  ``GET_LOCK``; the statements are the backend's ``try_lock``/``unlock``): a
  session-level lock taken on a connection held for the whole run. When the
  holder dies, its connection closes and the server frees the lock at once.
  A holder that vanishes without closing it (a crashed host, a cut network)
  says nothing more: the server ends that session once it has been idle for
  ``stale_seconds`` (``ArchiveOps.bound_idle_session``: PostgreSQL
  ``idle_session_timeout``, MySQL/MariaDB ``wait_timeout``), while a live
  holder's background thread writes its heartbeat on it every
  ``heartbeat_seconds``, whatever the run is doing (a long batch, a pause).
* **Leases** (SQLite): the ``table_locks`` row is the lock. Its holder (host +
  pid) renews ``heartbeat_at`` from a background thread every
  ``heartbeat_seconds``; another runner takes the row over when the holder's
  pid is gone on the same host, or its heartbeat is older than
  ``stale_seconds``, whichever comes first.

On every backend the ``table_locks`` row says who holds the table (host, pid,
run id, kind, since), so a refused runner can say who it waited for
(:attr:`TableLock.blocker`). A row left behind by a holder that died is
replaced by the next holder, which learns whose it was
(:attr:`TableLock.taken_over`) to close that run as abandoned.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import sqlalchemy as sa

from .backends import archive_ops_for
from .errors import LeaseLost
from .policy import utcnow
from .schema import table_locks

log = logging.getLogger(__name__)

HOST = socket.gethostname()[:255]


def new_holder_id() -> str:
    """A holder id unique to this process and call: ``host:pid:random``."""
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[:255]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a table's lock."""

    table_name: str
    kind: str
    run_id: int | None
    host: str
    pid: int
    since: datetime
    heartbeat_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"table_name": self.table_name, "kind": self.kind, "run_id": self.run_id, "host": self.host,
                "pid": self.pid, "since": self.since.isoformat(), "heartbeat_at": self.heartbeat_at.isoformat()}

    def describe(self) -> str:
        run = f"{self.kind} run {self.run_id}" if self.run_id is not None else f"a {self.kind} run"
        return f"{run} on host {self.host}, pid {self.pid}, since {self.since.isoformat(timespec='seconds')}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _holder(row: Any) -> Holder:
    return Holder(row.table_name, row.kind, row.run_id, row.host, row.pid, _aware(row.acquired_at),
                  _aware(row.heartbeat_at))


class TableLock:
    """The lock on one table for one runner.

    ``acquire(kind)`` returns whether we hold it (``blocker`` says who does when
    not; ``taken_over`` whose dead lock we replaced); ``attach(run_id)`` records
    our run in the row; ``renew_if_due()`` (between batches) raises
    :class:`LeaseLost` when the lock is no longer ours; ``release()`` gives it up.
    """

    def __init__(self, archive: sa.Engine, table_name: str, *, heartbeat_seconds: float = 5.0,
                 stale_seconds: float = 30.0, clock: Callable[[], datetime] = utcnow,
                 holder: str | None = None, host: str | None = None, pid: int | None = None) -> None:
        self.archive = archive
        self.table_name = table_name
        self.heartbeat = float(heartbeat_seconds)
        self.stale = timedelta(seconds=stale_seconds)
        self.clock = clock
        self.holder = holder or new_holder_id()
        self.host = host or HOST
        self.pid = os.getpid() if pid is None else pid
        self.kind = "archive"
        self.run_id: int | None = None
        self.held = False
        self.blocker: Holder | None = None
        self.taken_over: Holder | None = None
        self._ops = archive_ops_for(archive)
        self.advisory = self._ops.capabilities.advisory_locks
        self._conn: sa.Connection | None = None   # advisory: the connection holding the lock
        self._name: Any = None
        self._beat_at = 0.0
        self._lost = threading.Event()
        self._lost_why: str | None = None  # advisory: the lock's connection failed, in these words
        self._stop = threading.Event()
        self._dropped = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()  # the lock's connection: the run's thread or the heartbeat's

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.table_name}"

    # -- helpers -------------------------------------------------------------
    def _dt(self, value: datetime) -> datetime:
        return self._ops.datetime_param(value.astimezone(timezone.utc))

    def _key(self) -> sa.ColumnElement[bool]:
        return table_locks.c.table_name == self.table_name

    def _row(self, now: datetime) -> dict[str, Any]:
        return {"table_name": self.table_name, "holder": self.holder, "kind": self.kind, "run_id": self.run_id,
                "host": self.host, "pid": self.pid, "acquired_at": self._dt(now), "heartbeat_at": self._dt(now)}

    def _read(self, conn: sa.Connection) -> Any:
        return conn.execute(sa.select(table_locks).where(self._key())).one_or_none()

    # -- acquire ---------------------------------------------------------------
    def acquire(self, kind: str = "archive", run_id: int | None = None) -> bool:
        """Take the table's lock for a ``kind`` run if it is free (or its holder is dead); True when held."""
        self.kind, self.run_id = kind, run_id
        self.blocker = self.taken_over = None
        self._lost.clear()
        self._lost_why = None
        self._dropped.clear()
        self.held = self._acquire_advisory() if self.advisory else self._acquire_lease()
        if self.held:
            self._beat_at = _monotonic()
            self._start_heartbeat()
        return self.held

    @property
    def idle_bound(self) -> int:
        """Advisory locks: seconds of silence after which the server ends the lock's session (the
        staleness, and at least three heartbeats)."""
        return max(int(self.stale.total_seconds()), int(3 * self.heartbeat) + 1)

    def _acquire_advisory(self) -> bool:
        conn = self.archive.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            self._name = self._ops.lock_name(conn, self.table_name)
            got = self._ops.try_lock(conn, self._name)
            conn.commit()  # AUTOCOMMIT: ends SQLAlchemy's transaction object only
            if not got:
                with self.archive.connect() as other:
                    row = self._read(other)
                self.blocker = _holder(row) if row is not None else None
                conn.close()
                return False
            self._ops.bound_idle_session(conn, self.idle_bound)
            now = self.clock()
            # We hold the lock: nobody else writes this row meanwhile.
            row = self._read(conn)
            conn.execute(sa.delete(table_locks).where(self._key()))
            conn.execute(sa.insert(table_locks).values(**self._row(now)))
            conn.commit()
        except BaseException:
            _discard(conn)
            raise
        # A row we found belonged to a holder whose session ended (it released before deleting
        # nothing: a holder deletes its row before it unlocks), so that holder is dead.
        self.taken_over = _holder(row) if row is not None and row.holder != self.holder else None
        self._conn = conn
        return True

    def _acquire_lease(self) -> bool:
        now = self.clock()
        with self.archive.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            row = self._read(conn)
            if row is not None and row.holder != self.holder:
                current = _holder(row)
                if not self._is_dead(current, now):
                    self.blocker = current
                    return False
                self.taken_over = current
            conn.execute(sa.delete(table_locks).where(self._key()))
            conn.execute(sa.insert(table_locks).values(**self._row(now)))
        return True

    def _is_dead(self, holder: Holder, now: datetime) -> bool:
        if holder.host == self.host and not pid_alive(holder.pid):
            return True
        return now - holder.heartbeat_at > self.stale

    # -- while held --------------------------------------------------------------
    def attach(self, run_id: int) -> None:
        """Record the run that holds the lock (the row is written before the run record exists)."""
        self.run_id = run_id
        self._update(run_id=run_id)

    def _update(self, **values: Any) -> int:
        stmt = sa.update(table_locks).where(self._key(), table_locks.c.holder == self.holder).values(**values)
        if self.advisory:
            with self._conn_lock:
                if self._conn is None:
                    raise LeaseLost(self.name, "its connection was let go")
                n = self._conn.execute(stmt).rowcount
                self._conn.commit()
                return n
        with self.archive.begin() as conn:
            return conn.execute(stmt).rowcount

    def renew_if_due(self) -> None:
        """Between batches: raise LeaseLost if the lock is no longer ours (advisory: the lock's
        connection answers; lease: the heartbeat thread still owns the row)."""
        if not self.held:
            raise LeaseLost(self.name)
        if self._lost.is_set():
            self.held = False
            if self._lost_why is not None:
                raise LeaseLost(self.name, self._lost_why, side="archive")
            raise LeaseLost(self.name)
        if self.advisory and _monotonic() - self._beat_at >= self.heartbeat:
            try:
                self._beat_on_lock_connection()
            except LeaseLost:
                self.held = False
                raise

    renew = renew_if_due

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat:{self.table_name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        failures = 0
        while not self._stop.wait(self.heartbeat):
            if self.advisory:
                if not self._beat_advisory():
                    return
                continue
            try:
                n = self._update(heartbeat_at=self._dt(self.clock()))
            except Exception:  # noqa: BLE001 - busy or unreachable: try again; staleness decides
                failures += 1
                log.warning("could not renew the lock on %s (%d time(s) in a row)", self.table_name, failures)
                continue
            failures = 0
            if n != 1:
                log.error("the lock on %s was taken over by another runner", self.table_name)
                self._lost.set()
                return

    def _beat_on_lock_connection(self) -> None:
        """One heartbeat on the advisory lock's connection (it also keeps the session from being
        ended as idle); LeaseLost, the lock marked lost, when it is no longer ours."""
        try:
            n = self._update(heartbeat_at=self._dt(self.clock()))
        except sa.exc.DBAPIError as exc:
            self._lost_why = f"the archive database connection holding it failed: {self._ops.explain(exc)}"
            self._lost.set()
            raise LeaseLost(self.name, self._lost_why, side="archive") from exc
        if n != 1:  # our row is gone: someone took the table over (it must have seen us dead)
            self._lost.set()
            raise LeaseLost(self.name)
        self._beat_at = _monotonic()

    def _beat_advisory(self) -> bool:
        """The heartbeat thread's beat on an advisory lock; False when the lock is no longer ours
        (the run stops at its next check) or has been let go."""
        try:
            self._beat_on_lock_connection()
            return True
        except Exception as exc:  # noqa: BLE001 - whatever failed, the lock cannot be vouched for
            if self._stop.is_set() or (isinstance(exc, LeaseLost) and not self._lost.is_set()):
                return False  # let go (released or dropped) meanwhile
            if not self._lost.is_set():  # not a DB-API error (the connection discarded meanwhile)
                self._lost_why = f"the archive database connection holding it failed: {self._ops.explain(exc)}"
                self._lost.set()
            if self._lost_why is not None:
                log.error("the lock on %s is lost: %s", self.table_name, self._lost_why)
            else:
                log.error("the lock on %s was taken over by another runner", self.table_name)
            return False
        finally:
            if self._dropped.is_set():  # dropped while this heartbeat was waiting on the connection
                self._let_connection_go()

    # -- release -------------------------------------------------------------------
    def release(self) -> None:
        """Give the lock up (only if still ours): its row first, then the advisory lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 5)
            self._thread = None
        was_held, self.held = self.held, False
        with self._conn_lock:
            conn, self._conn = self._conn, None
        try:
            if was_held or conn is not None:
                stmt = sa.delete(table_locks).where(self._key(), table_locks.c.holder == self.holder)
                if conn is not None:
                    conn.execute(stmt)
                    self._ops.unlock(conn, self._name)
                    conn.commit()
                else:
                    with self.archive.begin() as c:
                        c.execute(stmt)
        except BaseException:
            if conn is not None:
                _discard(conn)  # never return a connection that may still hold the lock to the pool
                conn = None
            raise
        finally:
            if conn is not None:
                _discard(conn)  # not back to the pool: its session ends when idle (bound_idle_session)

    def drop(self) -> None:
        """Let the lock go without talking to the archive database (its connection failed): the
        advisory lock's connection is discarded (the server ends the session, and the lock with
        it); a lease row is left to go stale, or to be taken over once this process has ended."""
        self._dropped.set()
        self._stop.set()
        self.held = False
        self._let_connection_go(wait=False)

    def _let_connection_go(self, wait: bool = True) -> None:
        """Discard the advisory lock's connection. ``wait=False``: not while the heartbeat is
        waiting on it (a driver closes a connection only once its statement has ended, maybe
        after the network timeout): the heartbeat then discards it itself when its wait ends."""
        if not self._conn_lock.acquire(blocking=wait):
            return
        try:
            conn, self._conn = self._conn, None
        finally:
            self._conn_lock.release()
        if conn is not None:
            _discard(conn)

    def current_holder(self) -> Holder | None:
        """Who the ``table_locks`` row names now (None: nobody)."""
        with self.archive.connect() as conn:
            row = self._read(conn)
        return _holder(row) if row is not None else None


def _discard(conn: sa.Connection) -> None:
    try:
        conn.invalidate()
    except Exception:  # noqa: BLE001 - already gone
        pass
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


def _monotonic() -> float:
    return time.monotonic()


#: The old name, still used by the engine's entry points' signatures.
TableLease = TableLock

__all__ = ["HOST", "Holder", "TableLease", "TableLock", "new_holder_id", "pid_alive"]
