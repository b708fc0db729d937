"""Throttles: sleeps between batches, pauses on replica lag or load, budgets that stop a run cleanly
(every row in one place), and the signals each database reports, read for real."""
from __future__ import annotations

import math
import threading
import time

import pytest
import sqlalchemy as sa

from archiver.engine.archive import archive_table, throttle_for
from archiver.engine.backends import source_ops_for
from archiver.engine.backends.base import DatabaseSignals
from archiver.engine.errors import InvalidPolicy
from archiver.engine.throttle import StopRun, Throttle, ThrottleSettings
from tests.engine_support import NOW
from tests.mariadb_support import stopped_replication
from tests.relational_support import assert_each_row_in_one_place, create, fill_orders, orders_schema, snapshot, spec


class FakeClock:
    """A clock that moves only when slept on (or told to)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


class Readings:
    """Signals a test scripts: one value per read, the last one repeated."""

    def __init__(self, lags=(None,), sessions=(None,)) -> None:
        self.lags, self.sessions = list(lags), list(sessions)
        self.reads = 0

    def _next(self, values: list):
        self.reads += 1
        return values.pop(0) if len(values) > 1 else values[0]

    def replica_lag(self):
        return self._next(self.lags)

    def active_sessions(self):
        return self._next(self.sessions)


def throttle(clock: FakeClock, signals=None, **settings) -> Throttle:
    kw = {"signals": signals} if signals is not None else {}
    return Throttle(ThrottleSettings(**settings), clock=clock, sleep=clock.sleep, **kw)


# --- the throttle alone, on a fake clock -------------------------------------------------------

def test_sleeps_a_fixed_time_and_a_share_of_the_last_batch_between_batches():
    clock = FakeClock()
    t = throttle(clock, sleep_ms=100, sleep_ratio=0.5)
    t.before_batch()                  # the first batch waits for nothing
    assert clock.slept == []
    clock.now += 2.0                  # the batch took 2 s
    t.before_batch()
    assert clock.slept == [1.1]       # 0.1 s + half of 2 s
    assert t.summary() == {"slept_seconds": 1.1}


def test_pauses_while_the_replica_lags_then_goes_on_and_halves_the_batch():
    clock = FakeClock()
    lines, halved = [], []
    t = throttle(clock, Readings(lags=[5.0, 4.0, 0.5]), max_replica_lag_seconds=2, check_seconds=1.5)
    t.on_pause, t.on_lag = lines.append, lambda: halved.append(1)
    t.before_batch()
    assert lines == ["paused: replica lag 5.0 s > 2 s"]      # said once, when the pause starts
    assert clock.slept == [1.5, 1.5] and halved == [1]
    assert t.summary()["pauses"] == {"replica lag": {"count": 1, "seconds": 3.0,
                                                     "last": "replica lag 4.0 s > 2 s"}}


def test_a_replica_that_does_not_replicate_is_a_pause_never_blind_archiving():
    clock = FakeClock()
    lines = []
    t = throttle(clock, Readings(lags=[math.inf, 0.0]), max_replica_lag_seconds=10)
    t.on_pause = lines.append
    t.before_batch()
    assert lines == ["paused: replica lag unknown: the replica is not replicating"]


def test_load_over_the_limit_pauses_and_over_the_critical_limit_stops():
    clock = FakeClock()
    t = throttle(clock, Readings(sessions=[30, 12]), max_active_sessions=20, critical_active_sessions=50)
    t.before_batch()
    assert t.pauses["load"].count == 1 and clock.slept == [1.0]
    t = throttle(clock, Readings(sessions=[80]), max_active_sessions=20, critical_active_sessions=50)
    with pytest.raises(StopRun, match="critical load: 80 active sessions > 50"):
        t.before_batch()


def test_signals_are_read_at_most_every_check_interval_while_all_is_well():
    clock = FakeClock()
    readings = Readings(sessions=[1])
    t = throttle(clock, readings, max_active_sessions=20, check_seconds=5)
    for _ in range(10):
        t.before_batch()
        clock.now += 1.0
    assert readings.reads == 2        # at t=0 and t=5, not before every one of the 10 batches


def test_budgets_say_why_the_run_ends_and_a_long_pause_ends_on_the_time_budget():
    clock = FakeClock()
    t = throttle(clock, max_rows_per_run=1000, max_run_seconds=60)
    assert t.budget_left(999) is None
    assert t.budget_left(1000) == "row budget reached (1,000 rows)"
    clock.now += 60
    assert t.budget_left(0) == "time budget reached (60 s)"
    t = throttle(clock, Readings(lags=[100.0]), max_replica_lag_seconds=1, max_run_seconds=10)
    with pytest.raises(StopRun, match="time budget reached .* while paused: replica lag 100.0 s"):
        t.before_batch()


def test_a_stop_request_ends_a_pause():
    clock = FakeClock()
    t = throttle(clock, Readings(lags=[100.0]), max_replica_lag_seconds=1)
    t.should_stop = lambda: len(clock.slept) >= 3
    with pytest.raises(StopRun, match="stopped on request while paused"):
        t.before_batch()


# --- runs, on every backend, on related tables ------------------------------------------------

def orders_source(engines, n: int = 40) -> dict:
    md, orders, items, notes = orders_schema()
    create(engines.source, md)
    fill_orders(engines.source, orders, items, notes, n=n)
    return snapshot(engines.source, "orders", "order_items", "item_notes")


def test_a_row_budget_stops_the_run_between_batches_with_every_row_in_one_place(engines):
    original = orders_source(engines)
    policy = spec(batch_size=4, batch_mode="fixed", throttle=ThrottleSettings(max_rows_per_run=10))
    result = archive_table(engines.source, engines.archive, policy, now=NOW)
    assert result.stopped and result.stop_reason == "row budget reached (10 rows)"
    assert 10 <= result.rows_read < 30                  # 30 old orders: the run ended early
    assert_each_row_in_one_place(engines.source, engines.archive, original)
    again = archive_table(engines.source, engines.archive, spec(), now=NOW)   # the next run goes on
    assert result.rows_deleted + again.rows_deleted == 30 and not again.stopped
    assert_each_row_in_one_place(engines.source, engines.archive, original)


def test_critical_load_stops_before_a_row_moves_and_a_pause_is_in_the_result(engines):
    original = orders_source(engines)
    clock = FakeClock()
    critical = Throttle(ThrottleSettings(critical_active_sessions=5), Readings(sessions=[9]),
                        clock=clock, sleep=clock.sleep)
    result = archive_table(engines.source, engines.archive, spec(), now=NOW, throttle=critical)
    assert result.stopped and result.stop_reason == "critical load: 9 active sessions > 5"
    assert result.rows_deleted == 0
    assert_each_row_in_one_place(engines.source, engines.archive, original)

    lines = []
    paused = Throttle(ThrottleSettings(max_replica_lag_seconds=1, sleep_ms=1), Readings(lags=[3.0, 0.0]),
                      clock=clock, sleep=clock.sleep, on_pause=lines.append)
    result = archive_table(engines.source, engines.archive, spec(batch_size=8, batch_mode="fixed"), now=NOW,
                           throttle=paused)
    assert result.rows_deleted == 30 and not result.stopped and lines == ["paused: replica lag 3.0 s > 1 s"]
    summary = result.extra["throttle"]
    assert summary["pauses"]["replica lag"]["count"] == 1 and summary["slept_seconds"] > 0
    assert_each_row_in_one_place(engines.source, engines.archive, original)


def test_a_time_budget_stops_the_run_cleanly(engines):
    original = orders_source(engines)
    clock = FakeClock()
    budget = Throttle(ThrottleSettings(max_run_seconds=5, sleep_ms=2000), clock=clock, sleep=clock.sleep)
    result = archive_table(engines.source, engines.archive, spec(batch_size=3, batch_mode="fixed"), now=NOW,
                           throttle=budget)
    assert result.stopped and result.stop_reason == "time budget reached (5 s)"
    assert 0 < result.rows_deleted < 30
    assert_each_row_in_one_place(engines.source, engines.archive, original)


# --- the signals each database reports, read for real ------------------------------------------

def busy(engine: sa.Engine, seconds: float) -> threading.Thread:
    """A session running one statement for ``seconds``, on a thread."""
    sleep_sql = "SELECT pg_sleep(:s)" if engine.dialect.name == "postgresql" else "SELECT SLEEP(:s)"

    def run() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text(sleep_sql), {"s": seconds})

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_signals_each_database_reports(engines):
    signals = DatabaseSignals(source_ops_for(engines.source))
    if engines.backend == "sqlite":
        assert signals.active_sessions() is None and signals.replica_lag() is None
        md, orders, items, notes = orders_schema()
        create(engines.source, md)
        with pytest.raises(InvalidPolicy) as refused:
            archive_table(engines.source, engines.archive,
                          spec(throttle=ThrottleSettings(max_active_sessions=5, max_replica_lag_seconds=1)), now=NOW)
        assert refused.value.problems == {"max_active_sessions": ["A sqlite source cannot report active sessions."],
                                        "max_replica_lag_seconds": ["A sqlite source cannot report replica lag."]}
        return
    assert signals.replica_lag() is None                 # a primary with no replica (this machine's)
    idle = signals.active_sessions()
    thread = busy(engines.source, 1.5)
    try:
        deadline = time.monotonic() + 5
        seen = idle
        while seen <= idle and time.monotonic() < deadline:
            seen = signals.active_sessions()
    finally:
        thread.join()
    assert seen >= idle + 1                              # the sleeping session counts


@pytest.fixture
def mariadb_replica_connection(engines):
    """A MariaDB replication connection configured and not started: a replica that does not replicate."""
    with stopped_replication(engines.source, "archiver_test"):
        yield


@pytest.mark.parametrize("databases", ["mariadb"], indirect=True)
def test_a_mariadb_replica_that_does_not_replicate_pauses_the_run(engines, mariadb_replica_connection):
    assert DatabaseSignals(source_ops_for(engines.source)).replica_lag() == math.inf
    original = orders_source(engines)
    lines = []
    t = throttle_for(engines.source, ThrottleSettings(max_replica_lag_seconds=5, max_run_seconds=0.5,
                                                      check_seconds=0.1), on_pause=lines.append)
    result = archive_table(engines.source, engines.archive, spec(), now=NOW, throttle=t)
    assert lines == ["paused: replica lag unknown: the replica is not replicating"]
    assert result.stopped and result.rows_deleted == 0
    assert result.stop_reason.startswith("time budget reached (0.5 s) while paused")
    assert_each_row_in_one_place(engines.source, engines.archive, original)
