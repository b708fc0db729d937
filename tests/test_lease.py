"""The per-table lease: atomic, expiring, renewable; two runners never process one table at once."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from archiver.engine.archive import archive_table
from archiver.engine.errors import LeaseLost
from archiver.engine.lease import TableLease
from archiver.engine.policy import PolicySpec
from tests.engine_support import NOW, archived, engines, make_orders, old_dates, source_rows  # noqa: F401


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_one_holder_at_a_time_until_it_expires(engines):
    clock = Clock(NOW)
    a = TableLease(engines.archive, "orders", holder="a", ttl_seconds=60, clock=clock)
    b = TableLease(engines.archive, "orders", holder="b", ttl_seconds=60, clock=clock)
    assert a.acquire() is True
    assert b.acquire() is False and b.current_holder() == "a"
    assert a.acquire() is True  # re-entrant for the same holder
    clock.now += timedelta(seconds=59)
    assert b.acquire() is False
    clock.now += timedelta(seconds=2)  # a's lease expired (a was killed and never renewed)
    assert b.acquire() is True and b.current_holder() == "b"
    with pytest.raises(LeaseLost):
        a.renew()
    b.renew()
    b.release()
    assert b.current_holder() is None
    assert a.acquire() is True


def test_renewal_keeps_the_lease_and_kinds_are_independent(engines):
    clock = Clock(NOW)
    a = TableLease(engines.archive, "orders", holder="a", ttl_seconds=30, clock=clock)
    b = TableLease(engines.archive, "orders", holder="b", ttl_seconds=30, clock=clock)
    purge = TableLease(engines.archive, "orders", kind="purge", holder="b", ttl_seconds=30, clock=clock)
    other = TableLease(engines.archive, "customers", holder="b", ttl_seconds=30, clock=clock)
    assert a.acquire()
    assert purge.acquire() and other.acquire()
    for _ in range(5):
        clock.now += timedelta(seconds=20)
        a.renew_if_due()  # renewed every >= 10 s: never expires while a keeps working
        assert not b.acquire()
    a.release()
    assert b.acquire()


def test_racing_acquirers_get_exactly_one_winner(engines):
    n = 6
    barrier = threading.Barrier(n)
    wins: list[str] = []
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        lease = TableLease(engines.archive, "orders", holder=f"h{i}", ttl_seconds=60)
        try:
            barrier.wait(timeout=30)
            if lease.acquire():
                wins.append(lease.holder)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(wins) == 1


def test_two_runners_on_one_table_never_overlap_and_totals_are_exact(engines):
    """Runner A holds the lease and is paused mid-run; runner B is refused; A finishes everything."""
    make_orders(engines.source, old_dates(30))
    original = source_rows(engines.source, "orders")
    spec = PolicySpec("orders", archive_after_days=30, batch_size=5)
    paused, resume = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def runner_a() -> None:
        lease = TableLease(engines.archive, "orders", holder="A", ttl_seconds=600)
        assert lease.acquire()

        def checkpoint(name: str) -> None:
            if name == "after_batch" and not paused.is_set():
                paused.set()
                resume.wait(timeout=60)
        try:
            outcome["a"] = archive_table(engines.source, engines.archive, spec, now=NOW, lease=lease,
                                         checkpoint=checkpoint)
        finally:
            lease.release()

    t = threading.Thread(target=runner_a)
    t.start()
    assert paused.wait(timeout=60)
    b = TableLease(engines.archive, "orders", holder="B", ttl_seconds=600)
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
            lease = TableLease(engines.archive, "orders", holder=name, ttl_seconds=600)
            if lease.acquire():
                try:
                    moved.append(archive_table(engines.source, engines.archive, spec, now=NOW,
                                               lease=lease).rows_deleted)
                finally:
                    lease.release()
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


def test_a_run_whose_lease_is_taken_over_stops_after_its_committed_batch(engines):
    make_orders(engines.source, old_dates(12))
    original = source_rows(engines.source, "orders")
    clock = Clock(NOW)
    mine = TableLease(engines.archive, "orders", holder="slow", ttl_seconds=10, clock=clock)
    assert mine.acquire()

    def checkpoint(name: str) -> None:
        if name == "after_batch":
            # This runner stalled past its TTL and someone else took the table over.
            clock.now += timedelta(seconds=11)
            assert TableLease(engines.archive, "orders", holder="thief", ttl_seconds=10, clock=clock).acquire()

    with pytest.raises(LeaseLost):
        archive_table(engines.source, engines.archive, PolicySpec("orders", batch_size=4), now=NOW,
                      lease=mine, checkpoint=checkpoint)
    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    # It starts no batch after the loss; pipelined (PostgreSQL), the one in flight beside the
    # first finishes (its rows were locked: no other runner could take them meanwhile).
    assert len(arc) in ((4,) if engines.backend == "sqlite" else (4, 8)) and len(src) == 12 - len(arc)
    assert not set(src) & set(arc) and set(src) | set(arc) == set(original)


def test_lease_table_has_one_row_per_table_and_kind(engines):
    a = TableLease(engines.archive, "orders", holder="a", ttl_seconds=600)
    assert a.acquire()
    with engines.archive.connect() as conn:
        rows = conn.execute(sa.text("SELECT table_name, kind, holder FROM table_leases")).all()
    assert [tuple(r) for r in rows] == [("orders", "archive", "a")]
