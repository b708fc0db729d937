"""The per-table lock: one holder at a time for archive, purge and restore; it dies with its holder
(advisory locks on PostgreSQL/MariaDB, a pid + heartbeat lease on SQLite); two runners never
process one table at once; whoever holds it is on record."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from archiver.engine.archive import archive_table
from archiver.engine.errors import LeaseLost
from archiver.engine.lease import TableLock
from archiver.engine.policy import PolicySpec, utcnow
from tests.engine_support import NOW, archived, make_orders, old_dates, source_rows, sqlite_only  # noqa: F401


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_holder_at_a_time_and_archive_purge_restore_share_the_lock(engines):
    a = TableLock(engines.archive, "orders", holder="a")
    b = TableLock(engines.archive, "orders", holder="b")
    other_table = TableLock(engines.archive, "customers", holder="b")
    try:
        assert a.acquire("archive") is True
        a.attach(7)
        for kind in ("archive", "purge", "restore"):
            assert b.acquire(kind) is False
            assert (b.blocker.run_id, b.blocker.kind, b.blocker.pid, b.blocker.host) == (7, "archive", a.pid, a.host)
        assert "archive run 7 on host" in b.blocker.describe()
        assert other_table.acquire("purge") is True  # other tables are independent
        a.renew_if_due()
    finally:
        a.release()
        other_table.release()
    assert a.current_holder() is None
    assert b.acquire("purge") is True and b.taken_over is None  # a released cleanly: nothing taken over
    b.release()


def test_racing_acquirers_get_exactly_one_winner(engines):
    n = 6
    barrier = threading.Barrier(n)
    wins: list[TableLock] = []
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        lock = TableLock(engines.archive, "orders", holder=f"h{i}")
        try:
            barrier.wait(timeout=30)
            if lock.acquire():
                wins.append(lock)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(wins) == 1
    assert wins[0].current_holder().pid == os.getpid()
    wins[0].release()


def test_two_runners_on_one_table_never_overlap_and_totals_are_exact(engines):
    """Runner A holds the lock and is paused mid-run; runner B is refused; A finishes everything."""
    make_orders(engines.source, old_dates(30))
    original = source_rows(engines.source, "orders")
    spec = PolicySpec("orders", archive_after_days=30, batch_size=5)
    paused, resume = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def runner_a() -> None:
        lock = TableLock(engines.archive, "orders", holder="A")
        assert lock.acquire()

        def checkpoint(name: str) -> None:
            if name == "after_batch" and not paused.is_set():
                paused.set()
                resume.wait(timeout=60)
        try:
            outcome["a"] = archive_table(engines.source, engines.archive, spec, now=NOW, lease=lock,
                                         checkpoint=checkpoint)
        finally:
            lock.release()

    t = threading.Thread(target=runner_a)
    t.start()
    assert paused.wait(timeout=60)
    b = TableLock(engines.archive, "orders", holder="B")
    outcome["b_acquired"] = b.acquire()
    resume.set()
    t.join(timeout=120)

    assert outcome["b_acquired"] is False
    assert outcome["a"].rows_deleted == 30
    assert archived(engines.archive, "orders") == original
    assert source_rows(engines.source, "orders") == {}


def test_concurrent_runners_taking_turns_move_each_row_once(engines):
    make_orders(engines.source, old_dates(40))
    original = source_rows(engines.source, "orders")
    spec = PolicySpec("orders", archive_after_days=30, batch_size=3)
    moved: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def runner(name: str) -> None:
        try:
            barrier.wait(timeout=30)
            lock = TableLock(engines.archive, "orders", holder=name)
            if lock.acquire():
                try:
                    moved.append(archive_table(engines.source, engines.archive, spec, now=NOW,
                                               lease=lock).rows_deleted)
                finally:
                    lock.release()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(moved) == 40  # one ran (or both in turn): every row counted exactly once
    assert archived(engines.archive, "orders") == original
    assert source_rows(engines.source, "orders") == {}


# --- SQLite: a lease with host, pid and heartbeat --------------------------------------------

@sqlite_only  # the lease (pid + heartbeat) is the SQLite lock
def test_sqlite_lease_of_a_dead_pid_on_this_host_is_taken_over_at_once(engines):
    dead = TableLock(engines.archive, "orders", holder="dead", pid=_dead_pid())
    assert dead.acquire("archive")
    dead.attach(11)
    dead._stop.set()  # its process "died": no more heartbeats, no release
    alive = TableLock(engines.archive, "orders", holder="other-live", pid=os.getppid())
    assert alive.acquire("archive")  # a live pid, fresh heartbeat: ours is refused below
    alive._stop.set()
    alive_row = alive.current_holder()
    me = TableLock(engines.archive, "orders", holder="me")
    assert me.acquire() is False and me.blocker.pid == alive_row.pid
    # Now the holder is the dead pid again: taken over without waiting for staleness.
    with engines.archive.begin() as conn:
        conn.exec_driver_sql("UPDATE table_locks SET pid = ?, run_id = 11", (dead.pid,))
    assert me.acquire() is True
    assert me.taken_over is not None and me.taken_over.run_id == 11 and me.taken_over.pid == dead.pid
    me.release()


@sqlite_only  # the lease (pid + heartbeat) is the SQLite lock
def test_sqlite_lease_of_another_host_is_taken_over_once_its_heartbeat_is_stale(engines):
    clock = Clock(utcnow())
    remote = TableLock(engines.archive, "orders", holder="remote", host="elsewhere", pid=1, clock=clock,
                       heartbeat_seconds=3600)
    assert remote.acquire()
    mine = TableLock(engines.archive, "orders", holder="mine", stale_seconds=30, clock=clock)
    clock.now += timedelta(seconds=29)
    assert mine.acquire() is False and mine.blocker.host == "elsewhere"
    clock.now += timedelta(seconds=2)
    assert mine.acquire() is True and mine.taken_over.host == "elsewhere"
    # The old holder finds out at its next check between batches.
    with pytest.raises(LeaseLost):
        remote._beat_at = 0
        remote._update(heartbeat_at=clock.now) or remote._lost.set()
        remote.renew_if_due()
    remote._stop.set()
    mine.release()


@sqlite_only  # the lease (pid + heartbeat) is the SQLite lock
def test_sqlite_heartbeat_keeps_a_live_holder_and_notices_a_takeover(engines):
    holder = TableLock(engines.archive, "orders", holder="h", heartbeat_seconds=0.05, stale_seconds=3)
    assert holder.acquire()
    first = holder.current_holder().heartbeat_at
    threading.Event().wait(0.3)
    assert holder.current_holder().heartbeat_at > first
    with engines.archive.begin() as conn:  # another runner took the row over
        conn.exec_driver_sql("UPDATE table_locks SET holder = 'thief'")
    threading.Event().wait(0.3)
    with pytest.raises(LeaseLost):
        holder.renew_if_due()
    holder.release()
    assert holder.current_holder() is not None  # release never deletes someone else's row


def test_a_run_whose_lock_is_taken_over_stops_after_its_committed_batch(engines):
    make_orders(engines.source, old_dates(12))
    original = source_rows(engines.source, "orders")
    mine = TableLock(engines.archive, "orders", holder="slow", heartbeat_seconds=0.01)
    assert mine.acquire()

    def checkpoint(name: str) -> None:
        if name == "after_batch":
            # Another runner judged this one dead and took the table over.
            with engines.archive.begin() as conn:
                conn.execute(sa.text("UPDATE table_locks SET holder = 'thief'"))
            threading.Event().wait(0.1)

    with pytest.raises(LeaseLost):
        archive_table(engines.source, engines.archive, PolicySpec("orders", batch_size=4), now=NOW,
                      lease=mine, checkpoint=checkpoint)
    mine.release()
    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    # It starts no batch after the loss; pipelined (PostgreSQL), the one in flight beside the
    # first finishes (its rows were locked: no other runner could take them meanwhile).
    assert len(arc) in ((4,) if engines.backend == "sqlite" else (4, 8)) and len(src) == 12 - len(arc)
    assert not set(src) & set(arc) and set(src) | set(arc) == set(original)


# --- PostgreSQL and MariaDB: advisory locks (pg_try_advisory_lock, GET_LOCK) ----------------------

#: backend -> (the session's id, the statement that ends that session from another one)
_SESSIONS = {"postgres": ("SELECT pg_backend_pid()", "SELECT pg_terminate_backend({session})"),
             "mariadb": ("SELECT CONNECTION_ID()", "KILL {session}")}


@pytest.mark.parametrize("databases", ["postgres", "mariadb"], indirect=True)
def test_advisory_lock_dies_with_its_session_and_the_row_names_the_dead_holder(engines):
    own_id, kill = _SESSIONS[engines.backend]
    dead = TableLock(engines.archive, "orders", holder="dead")
    assert dead.acquire("archive")
    dead.attach(5)
    session = int(dead._conn.execute(sa.text(own_id)).scalar())
    dead._conn.commit()
    other = TableLock(engines.archive, "orders", holder="other")
    assert other.acquire() is False and other.blocker.run_id == 5
    with engines.archive.connect() as conn:  # the holder's session ends (its process was killed)
        conn.execute(sa.text(kill.format(session=session)))
        conn.commit()
    deadline = time.monotonic() + 5  # the server ends the session (and frees its locks) in a moment
    while not other.acquire():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert other.taken_over.run_id == 5 and other.taken_over.pid == os.getpid()
    with pytest.raises(LeaseLost, match="connection holding it failed"):
        dead._beat_at = 0
        dead.renew_if_due()
    other.release()
    assert other.current_holder() is None
