"""Adaptive batch sizes: grow while batches commit well under the target time, shrink when they take
too long or the source answers with a lock wait; bounded by rows and by bytes; a fixed size stays fixed."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from archiver.engine.archive import archive_table
from archiver.engine.backends import source_ops_for
from archiver.engine.policy import PolicySpec
from archiver.engine.sizing import BatchSizer, SizingSettings
from tests.engine_support import NOW, archived, make_orders, source_rows  # noqa: F401


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def batch(self, sizer: BatchSizer, seconds: float, rows: int | None = None, payload_bytes: int | None = None):
        self.now += seconds
        sizer.committed(sizer() if rows is None else rows, payload_bytes)
        return sizer()


def test_grows_while_fast_and_shrinks_in_proportion_when_slow():
    clock = FakeClock()
    sizer = BatchSizer(settings=SizingSettings(target_seconds=1.0, start_rows=1000, max_rows=50_000), clock=clock)
    assert sizer() == 1000
    assert clock.batch(sizer, 0.1) == 2000      # well under the target: doubles (at most)
    assert clock.batch(sizer, 0.1) == 4000
    assert clock.batch(sizer, 0.9) == 4000      # close to the target: keeps
    assert clock.batch(sizer, 2.0) == 2000      # twice the target: half
    assert clock.batch(sizer, 8.0) == 500       # far over: a quarter at most per batch
    sizer.conflicted()                          # a lock wait on the source: half at once
    assert sizer() == 250
    summary = sizer.summary()
    assert summary["mode"] == "adaptive" and summary["min"] == 250 and summary["max"] == 4000
    assert summary["shrunk_on_conflict"] == 1


def test_bounded_by_the_ceiling_the_floor_and_the_bytes_held():
    clock = FakeClock()
    sizer = BatchSizer(ceiling=3000, settings=SizingSettings(min_rows=100, max_bytes=1_000_000), clock=clock)
    for _ in range(5):
        clock.batch(sizer, 0.01)
    assert sizer() == 3000                      # the policy's batch_size is the ceiling
    clock.batch(sizer, 0.01, payload_bytes=3000 * 1000)  # 1,000-byte rows: 1 MB holds 1,000 of them
    assert sizer() == 1000
    for _ in range(20):
        sizer.conflicted()
    assert sizer() == 100                       # never below the floor


def test_a_fixed_size_never_changes():
    clock = FakeClock()
    sizer = BatchSizer(fixed=700, clock=clock)
    for seconds in (0.01, 9.0, 0.01):
        assert clock.batch(sizer, seconds) == 700
    sizer.conflicted()
    assert sizer() == 700 and sizer.summary()["mode"] == "fixed"


def test_a_run_on_a_default_policy_grows_its_batches(engines):
    make_orders(engines.source, [NOW - timedelta(days=90, seconds=i) for i in range(6000)])
    result = archive_table(engines.source, engines.archive, PolicySpec("orders", archive_after_days=30), now=NOW)
    sizes = result.extra["batch_sizes"]
    assert result.rows_deleted == 6000 and sizes["mode"] == "adaptive"
    assert sizes["first"] == 1000 and sizes["max"] > 1000 and result.batches < 6
    assert len(archived(engines.archive, "orders")) == 6000


class ShortLockWaits:
    """The backend's source ops with lock waits given up after a fraction of a second."""

    def __new__(cls, engine: sa.Engine):
        ops = source_ops_for(engine)
        real = ops.prepare

        def prepare(conn):
            undo = real(conn)
            setting = ("SET lock_timeout = '300ms'" if engine.dialect.name == "postgresql"
                       else "SET SESSION innodb_lock_wait_timeout = 1")
            conn.exec_driver_sql(setting)
            conn.commit()
            return undo

        ops.prepare = prepare
        return ops


@pytest.mark.parametrize("databases", ["postgres", "mariadb"], indirect=True)
def test_a_lock_wait_on_the_source_halves_the_batch_and_the_run_goes_on(engines):
    make_orders(engines.source, [NOW - timedelta(days=90, seconds=i) for i in range(1200)])
    original = source_rows(engines.source, "orders")
    holder = engines.source.connect()
    holder.begin()
    holder.execute(sa.text("SELECT id FROM orders WHERE id = 700 FOR UPDATE")).all()  # in the first 1,000
    release = threading.Timer(2.5, holder.rollback)  # a production transaction that ends, later
    release.start()
    try:
        result = archive_table(engines.source, engines.archive, PolicySpec("orders", archive_after_days=30),
                               now=NOW, source_ops=ShortLockWaits(engines.source), pipeline=False)
    finally:
        release.join()
        holder.close()
    sizes = result.extra["batch_sizes"]
    assert sizes["shrunk_on_conflict"] >= 1 and sizes["min"] < 1000
    assert result.rows_deleted == 1200 and set(archived(engines.archive, "orders")) == set(original)
    assert source_rows(engines.source, "orders") == {}


@pytest.mark.parametrize("databases", ["postgres", "mariadb"], indirect=True)
@pytest.mark.parametrize("in_server", [True, False])
def test_a_lock_wait_while_batches_overlap_redoes_that_batch_alone_and_smaller(engines, in_server, monkeypatch):
    from archiver.engine.backends.mysql import MySQLSourceOps
    monkeypatch.setattr(MySQLSourceOps, "min_pipeline_rows", 0)  # overlap on this small table too
    make_orders(engines.source, [NOW - timedelta(days=90, seconds=i) for i in range(3000)])
    original = source_rows(engines.source, "orders")
    holder = engines.source.connect()
    holder.begin()
    holder.execute(sa.text("SELECT id FROM orders WHERE id = 1700 FOR UPDATE")).all()
    release = threading.Timer(2.5, holder.rollback)
    release.start()
    try:
        result = archive_table(engines.source, engines.archive, PolicySpec("orders", archive_after_days=30),
                               now=NOW, source_ops=ShortLockWaits(engines.source), in_server=in_server)
    finally:
        release.join()
        holder.close()
    assert result.extra.get("pipelined") or result.extra.get("in_server")
    assert result.extra["batch_sizes"]["shrunk_on_conflict"] >= 1
    assert result.rows_deleted == 3000 and set(archived(engines.archive, "orders")) == set(original)
