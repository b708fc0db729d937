"""Throttles as operators set them: policy fields over /config (validated, saved, shown), the
THROTTLE_* defaults, and runs through the CLI and the service that sleep, pause on the source's real
load and stop on their budgets with every row in exactly one place (engine-level throttle tests with
faked signals and a fake clock: tests/test_throttle.py)."""
from __future__ import annotations

import logging
import threading

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import ArchiveRun
from archiver.services import database
from archiver.services import jobs as job_service
from tests.app_support import BACKENDS, make_app
from tests.auth_support import assert_error
from tests.engine_support import add_policy, all_runs, archived, make_orders, old_dates, source_rows
from tests.mariadb_support import stopped_replication
from tests.relational_support import assert_each_row_in_one_place, create, fill_orders, orders_schema, snapshot

GOOD = {"table_name": "orders", "archive_after_days": 30, "delete_after_days": 365}
THROTTLES = {"sleep_ms": 50, "sleep_ratio": 0.5, "max_run_seconds": 600, "max_rows_per_run": 100_000}
SIGNALS = {"max_replica_lag_seconds": 2.5, "max_active_sessions": 20, "critical_active_sessions": 60}
on_sqlite = pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
#: The servers that report their load (a SQLite source's refusal is tested on its own).
on_servers = pytest.mark.parametrize("databases", [b for b in BACKENDS if b != "sqlite"], indirect=True)


@pytest.fixture
def admin(accounts):
    return accounts.admin("admin")


@pytest.fixture
def orders(source_engine):
    make_orders(source_engine, old_dates(3))


@pytest.fixture
def related(source_engine) -> dict:
    """orders → order_items → item_notes (ON DELETE CASCADE): 40 orders, all old enough to move now."""
    md, orders_t, items, notes = orders_schema()
    create(source_engine, md)
    fill_orders(source_engine, orders_t, items, notes, n=40)
    return snapshot(source_engine, "orders", "order_items", "item_notes")


# --- the policy fields over /config -------------------------------------------------------------

@on_sqlite
@pytest.mark.parametrize("field, value", [
    ("sleep_ms", "100"), ("sleep_ms", -1), ("sleep_ms", 1.5), ("sleep_ms", True), ("sleep_ms", 600_001),
    ("sleep_ratio", "0.5"), ("sleep_ratio", -0.1), ("sleep_ratio", 101), ("sleep_ratio", False),
    ("max_run_seconds", -5), ("max_run_seconds", 10**9), ("max_rows_per_run", "many"), ("max_rows_per_run", -1),
    ("max_replica_lag_seconds", "2s"), ("max_active_sessions", -1), ("critical_active_sessions", [3]),
])
def test_a_bad_throttle_value_is_a_400_naming_the_field(app, client, admin, orders, field, value):
    error = assert_error(client.post("/config", json={**GOOD, field: value}, headers=admin), 400, "validation_error")
    assert field in error["details"], error
    assert client.get("/config/", headers=admin).get_json()["items"] == []


def test_a_critical_load_at_or_under_the_pausing_load_is_refused(client, admin, orders, databases):
    for critical in (5, 4):
        error = assert_error(client.post("/config", json={**GOOD, "max_active_sessions": 5,
                                                          "critical_active_sessions": critical}, headers=admin),
                             400, "validation_error")
        assert list(error["details"]) == ["critical_active_sessions"]
        assert "more than max_active_sessions" in error["details"]["critical_active_sessions"][0]
    if databases.backend != "sqlite":  # (a SQLite source reports no load: see below)
        ok = client.post("/config", json={**GOOD, "max_active_sessions": 5, "critical_active_sessions": 0},
                         headers=admin)
        assert ok.status_code == 201 and ok.get_json()["critical_active_sessions"] == 0  # 0: no critical load


def test_throttle_fields_are_saved_shown_and_emptied(client, admin, orders, databases):
    body = {**GOOD, **THROTTLES, **({} if databases.backend == "sqlite" else SIGNALS)}
    resp = client.post("/config", json=body, headers=admin)
    assert resp.status_code == 201, resp.get_json()
    shown = client.get("/config/orders", headers=admin).get_json()
    assert {k: shown[k] for k in body} == body
    preview = client.post("/config/orders/preview", json={"sleep_ms": 0}, headers=admin)
    assert preview.status_code == 200 and preview.get_json()["sleep_ms"] == 0
    assert preview.get_json()["max_rows_per_run"] == 100_000
    resp = client.post("/config", json={**GOOD, "sleep_ms": None}, headers=admin)   # a full update: the rest empty
    assert resp.status_code == 200, resp.get_json()
    assert all(resp.get_json()[k] is None for k in {**THROTTLES, **SIGNALS})


def test_a_signal_the_source_cannot_report_is_refused_and_one_it_can_is_kept(client, admin, orders, databases):
    for field, value in SIGNALS.items():
        resp = client.post("/config", json={**GOOD, field: value}, headers=admin)
        if databases.backend == "sqlite":
            error = assert_error(resp, 400, "validation_error")
            assert error["details"] == {field: [f"A sqlite source cannot report "
                                                f"{'replica lag' if 'lag' in field else 'active sessions'}."]}
        else:
            assert resp.status_code in (200, 201), resp.get_json()
            assert resp.get_json()[field] == value
    if databases.backend == "sqlite":  # 0 is "off": fine on any source
        resp = client.post("/config", json={**GOOD, "max_active_sessions": 0}, headers=admin)
        assert resp.status_code == 201 and resp.get_json()["max_active_sessions"] == 0


# --- budgets: a run stops cleanly between batches ----------------------------------------------

def test_a_row_budget_ends_the_run_partial_and_the_next_run_goes_on(app, runner, source_engine, archive_engine,
                                                                    related):
    add_policy(app, "orders", batch_size=4, batch_mode="fixed", max_rows_per_run=10)
    result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 0, result.output  # like pt-archiver --run-time: it did what it was told
    assert "orders: partial: archived" in result.output
    assert "stopped early: row budget reached (10 rows)" in result.output and "1 partial" in result.output
    (run,) = all_runs(app)
    assert run.status == "partial" and run.error == "stopped early: row budget reached (10 rows)"
    assert 10 <= run.rows_read < 40 and run.rows_deleted == run.rows_read
    assert_each_row_in_one_place(source_engine, archive_engine, related)

    while len(all_runs(app)) < 6 and len(archived(archive_engine, "orders")) < 40:
        assert runner.invoke(args=["archive-now"]).exit_code == 0
    assert len(archived(archive_engine, "orders")) == 40 and source_rows(source_engine, "orders") == {}
    assert all_runs(app)[-1].status == "succeeded"
    assert_each_row_in_one_place(source_engine, archive_engine, related)


def test_a_time_budget_ends_the_run_partial_with_every_row_in_one_place(app, runner, source_engine,
                                                                       archive_engine, related):
    # 0.4 s between batches of 2: 20 batches would need 7.6 s of sleep; the budget is 1 s.
    add_policy(app, "orders", batch_size=2, batch_mode="fixed", sleep_ms=400, max_run_seconds=1)
    result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 0, result.output
    assert "stopped early: time budget reached (1 s)" in result.output
    assert "throttle: slept" in result.output
    (run,) = all_runs(app)
    assert run.status == "partial" and 0 < run.rows_deleted < 40
    assert run.details["throttle"]["slept_seconds"] >= 0.4
    assert_each_row_in_one_place(source_engine, archive_engine, related)


@on_sqlite
def test_the_global_row_budget_applies_unless_a_policy_turns_it_off(app, runner, source_engine, archive_engine):
    make_orders(source_engine, old_dates(12))
    app.config["THROTTLE_MAX_ROWS_PER_RUN"] = 4
    add_policy(app, "orders", batch_size=2, batch_mode="fixed")
    result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 0 and "row budget reached (4 rows)" in result.output, result.output
    assert len(archived(archive_engine, "orders")) == 4
    with app.app_context():
        db.session.execute(sa.text("UPDATE archive_policies SET max_rows_per_run = 0"))
        db.session.commit()
    result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 0 and "orders: succeeded: archived 8 rows" in result.output, result.output
    assert source_rows(source_engine, "orders") == {}


@on_sqlite
def test_a_signal_default_a_sqlite_source_cannot_report_is_left_out_with_a_warning(app, runner, source_engine,
                                                                                  caplog):
    make_orders(source_engine, old_dates(3))
    app.config["THROTTLE_MAX_ACTIVE_SESSIONS"] = 1
    add_policy(app, "orders")
    with caplog.at_level(logging.WARNING, logger="archiver.services.throttles"):
        result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 0 and "orders: succeeded: archived 3 rows" in result.output, result.output
    assert "THROTTLE_MAX_ACTIVE_SESSIONS ignored: a sqlite source cannot report active sessions" in caplog.text


# --- load: pause on the source's real active sessions (PostgreSQL, MariaDB) ----------------------

def busy_sessions(engine: sa.Engine, count: int, seconds: float) -> list[threading.Thread]:
    """``count`` sessions each running one statement for ``seconds`` (started and running on return)."""
    sleep_sql = "SELECT pg_sleep(:s)" if engine.dialect.name == "postgresql" else "SELECT SLEEP(:s)"
    started = threading.Barrier(count + 1)

    def run() -> None:
        with engine.connect() as conn:
            started.wait()
            conn.execute(sa.text(sleep_sql), {"s": seconds})

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    started.wait()
    return threads


def other_engine(source_engine: sa.Engine) -> sa.Engine:
    return sa.create_engine(source_engine.url, poolclass=sa.pool.NullPool)


@on_servers
def test_a_run_pauses_while_the_source_is_loaded_and_says_so(app, runner, source_engine, archive_engine,
                                                           related):
    app.config["THROTTLE_CHECK_MS"] = 100
    add_policy(app, "orders", batch_size=8, batch_mode="fixed", max_active_sessions=1)
    load = other_engine(source_engine)
    try:
        threads = busy_sessions(load, 3, 2.5)
        result = runner.invoke(args=["archive-now"])
        for t in threads:
            t.join()
    finally:
        load.dispose()
    assert result.exit_code == 0, result.output
    assert "orders: paused: load " in result.output and "active sessions > 1" in result.output
    assert "orders: succeeded: archived 40 rows" in result.output
    assert "paused 1× for load" in result.output
    (run,) = all_runs(app)
    pause = run.details["throttle"]["pauses"]["load"]
    assert pause["count"] == 1 and pause["seconds"] > 0 and pause["last"].startswith("load ")
    assert_each_row_in_one_place(source_engine, archive_engine, related)


@on_servers
def test_critical_load_stops_the_run_then_a_pause_shows_on_the_running_record(app, source_engine, archive_engine,
                                                                            related):
    app.config["THROTTLE_CHECK_MS"] = 100
    add_policy(app, "orders", batch_size=8, batch_mode="fixed", max_active_sessions=1, critical_active_sessions=2)
    seen: list[tuple[str, str, dict]] = []

    def on_pause(table: str, why: str) -> None:  # the record as another process would read it now
        with archive_engine.connect() as conn:
            status, details = conn.execute(sa.select(ArchiveRun.status, ArchiveRun.details)
                                           .where(ArchiveRun.status == "running")).one()
        seen.append((why, status, details))

    load = other_engine(source_engine)
    try:
        # Over the critical load: the run stops before a row moves, partial, says why, exits 4.
        threads = busy_sessions(load, 4, 2.0)
        result = app.test_cli_runner().invoke(args=["archive-now"])
        for t in threads:
            t.join()
        assert result.exit_code == 4, result.output
        assert "orders: partial: archived 0 rows" in result.output and "stopped early: critical load: " in result.output
        assert snapshot(source_engine, "orders", "order_items", "item_notes") == related

        with app.app_context():
            db.session.execute(sa.text("UPDATE archive_policies SET critical_active_sessions = 0"))
            db.session.commit()
        threads = busy_sessions(load, 3, 2.0)
        with app.app_context():
            report = job_service.run_archive(trigger="cli", on_pause=on_pause)
        for t in threads:
            t.join()
    finally:
        load.dispose()
    ((why, status, details),) = seen
    assert why.startswith("paused: load ") and status == "running"
    assert details["throttle"]["paused"] == why.removeprefix("paused: ")
    (outcome,) = report.outcomes
    assert outcome.status == "succeeded" and not outcome.critical_load
    assert outcome.throttle["pauses"]["load"]["count"] == 1
    critical, paused = all_runs(app)
    assert critical.status == "partial" and critical.error.startswith("stopped early: critical load: ")
    assert paused.status == "succeeded" and paused.details["throttle"]["pauses"]["load"]["count"] == 1
    assert_each_row_in_one_place(source_engine, archive_engine, related)


# --- replica lag on REPLICA_DATABASE_URL -----------------------------------------------------------

@pytest.fixture
def stopped_mariadb_replica(mysql_db):
    """A MariaDB server with a replication connection configured and not started (a replica that
    does not replicate); the URL of a throwaway database on it."""
    with stopped_replication(mysql_db, "archiver_svc_test"):
        yield mysql_db.url.render_as_string(hide_password=False)


@pytest.mark.parametrize("databases", [b for b in BACKENDS if b == "postgres"], indirect=True)
def test_replica_lag_is_read_on_the_replica_url(databases, stopped_mariadb_replica):
    """A PostgreSQL source without standbys has no lag; the same run with REPLICA_DATABASE_URL on a
    replica that does not replicate pauses until its time budget ends it."""
    moved = 0
    for replica in (None, stopped_mariadb_replica):
        app = make_app(databases, THROTTLE_CHECK_MS=100, REPLICA_DATABASE_URL=replica)
        try:
            with app.app_context():
                if replica is None:
                    database.init_db()
                    make_orders(db.engines["source"], old_dates(30))
                    add_policy(app, "orders", batch_size=6, batch_mode="fixed", max_replica_lag_seconds=5,
                               max_run_seconds=3, max_rows_per_run=6)
                report = job_service.run_archive(trigger="cli")
                left = len(source_rows(db.engines["source"], "orders"))
        finally:
            with app.app_context():
                for engine in db.engines.values():
                    engine.dispose()
        (outcome,) = report.outcomes
        if replica is None:
            # The row budget ends it (an overlapped batch already in flight may finish too).
            assert outcome.status == "partial" and outcome.error == "stopped early: row budget reached (6 rows)"
            assert outcome.rows in (6, 12) and outcome.throttle is None  # no pause: no lag on the source
            moved = outcome.rows
        else:
            assert outcome.status == "partial" and outcome.rows == 0, outcome
            assert outcome.error.startswith("stopped early: time budget reached (3 s) while paused: replica lag unknown")
            assert outcome.throttle["pauses"]["replica lag"]["count"] == 1
        assert left == 30 - moved
