"""Adaptive batch sizes: grow while batches commit well under the target time, shrink when they take
too long or the source answers with a lock wait or a statement timeout (not a cancel request);
bounded by rows and by bytes; a fixed size stays fixed."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from archiver.engine.archive import archive_table
from archiver.engine.backends import source_ops_for
from archiver.engine.policy import PolicySpec
from archiver.engine.sizing import BatchSizer, SizingSettings
from tests.engine_support import NOW, archived, make_orders, postgres_only, source_rows  # noqa: F401


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def batch(self, sizer: BatchSizer, seconds: float, rows: int | None = None, held_bytes: int | None = None):
        self.now += seconds
        sizer.committed(sizer() if rows is None else rows, held_bytes)
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
    clock.batch(sizer, 0.01, held_bytes=3000 * 1000)  # 1,000-byte rows: 1 MB holds 1,000 of them
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
    """The backend's source ops with lock waits given up after a fraction of a second (``statement``:
    every statement given up instead, by the statement timeout)."""

    def __new__(cls, engine: sa.Engine, statement: bool = False):
        ops = source_ops_for(engine)
        real = ops.prepare
        postgres = engine.dialect.name == "postgresql"
        if statement:
            setting = "SET statement_timeout = '300ms'" if postgres else "SET SESSION max_statement_time = 0.3"
        else:
            setting = "SET lock_timeout = '300ms'" if postgres else "SET SESSION innodb_lock_wait_timeout = 1"

        def prepare(conn):
            undo = real(conn)
            conn.exec_driver_sql(setting)
            conn.commit()
            return undo

        ops.prepare = prepare
        return ops


@pytest.mark.parametrize("databases", ["postgres", "mariadb"], indirect=True)
@pytest.mark.parametrize("statement", [False, True], ids=["lock-timeout", "statement-timeout"])
def test_a_lock_wait_on_the_source_halves_the_batch_and_the_run_goes_on(engines, statement):
    """A lock wait given up by the lock timeout, or by the statement timeout, shrinks the batch."""
    make_orders(engines.source, [NOW - timedelta(days=90, seconds=i) for i in range(1200)])
    original = source_rows(engines.source, "orders")
    holder = engines.source.connect()
    holder.begin()
    holder.execute(sa.text("SELECT id FROM orders WHERE id = 700 FOR UPDATE")).all()  # in the first 1,000
    release = threading.Timer(2.5, holder.rollback)  # a production transaction that ends, later
    release.start()
    try:
        result = archive_table(engines.source, engines.archive, PolicySpec("orders", archive_after_days=30),
                               now=NOW, source_ops=ShortLockWaits(engines.source, statement),
                               pipeline=False)
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


def _raised(conn: sa.Connection, sql: str) -> sa.exc.DBAPIError:
    """The error ``sql`` raises on ``conn`` (its transaction rolled back)."""
    with pytest.raises(sa.exc.DBAPIError) as caught:
        conn.exec_driver_sql(sql)
    conn.rollback()
    return caught.value


def _interrupt_when_busy(engine: sa.Engine, find: str, interrupt: str, session: int) -> threading.Thread:
    """A thread that waits until ``session`` runs its statement (``find`` returns a row), then
    ``interrupt``s it, from a connection of its own."""
    def run() -> None:
        with engine.connect() as other:
            for _ in range(200):
                if other.execute(sa.text(find), {"session": session}).first() is not None:
                    break
                other.rollback()
                time.sleep(0.05)
            other.execute(sa.text(interrupt.format(session=int(session))))
            other.commit()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@postgres_only
def test_postgres_a_statement_timeout_is_a_lock_conflict_and_a_cancel_request_is_not(engines):
    """Both are SQLSTATE 57014: only the timeout shrinks the batch; a cancel (pg_cancel_backend, a
    user or an operator) fails the run as before."""
    ops = source_ops_for(engines.source)
    with engines.source.connect() as conn:
        conn.exec_driver_sql("SET statement_timeout = '50ms'")
        timed_out = _raised(conn, "SELECT pg_sleep(1)")
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.exec_driver_sql("SET statement_timeout = 0")
        canceller = _interrupt_when_busy(
            engines.source, "SELECT 1 FROM pg_stat_activity WHERE pid = :session AND wait_event = 'PgSleep'",
            "SELECT pg_cancel_backend({session})", pid)
        cancelled = _raised(conn, "SELECT pg_sleep(10)")
        canceller.join(timeout=15)
    assert timed_out.orig.pgcode == cancelled.orig.pgcode == "57014"
    assert ops.is_lock_conflict(timed_out) is True
    assert ops.is_lock_conflict(cancelled) is False
    assert ops.explain(timed_out) == "statement timeout (SQLSTATE 57014)"
    assert ops.explain(cancelled) == "statement cancelled (SQLSTATE 57014)"


@pytest.mark.parametrize("databases", ["mariadb"], indirect=True)
def test_mariadb_a_statement_timeout_is_a_lock_conflict_and_a_killed_query_is_not(engines):
    """max_statement_time (1969) shrinks the batch; KILL QUERY (1317) fails the run as before. (SLEEP:
    an interrupted BENCHMARK() returns 0 without an error.)"""
    ops = source_ops_for(engines.source)
    with engines.source.connect() as conn:
        conn.exec_driver_sql("SET SESSION max_statement_time = 0.05")
        timed_out = _raised(conn, "SELECT SLEEP(1)")
        conn.exec_driver_sql("SET SESSION max_statement_time = 0")
        session = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        killer = _interrupt_when_busy(
            engines.source, "SELECT 1 FROM information_schema.processlist WHERE id = :session "
            "AND info LIKE 'SELECT SLEEP%'", "KILL QUERY {session}", session)
        killed = _raised(conn, "SELECT SLEEP(10)")
        killer.join(timeout=15)
    assert timed_out.orig.args[0] == 1969 and ops.is_lock_conflict(timed_out) is True
    assert ops.explain(timed_out) == "statement timeout (error 1969)"
    assert killed.orig.args[0] == 1317 and ops.is_lock_conflict(killed) is False
