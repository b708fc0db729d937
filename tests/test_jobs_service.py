"""Archive/purge jobs through the service: run records, failure isolation, leases, preview, scheduler."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.lease import TableLock
from archiver.models import ScheduleCheck
from archiver.extensions import db, scheduler
from archiver.scheduler import jobs as scheduler_jobs
from archiver.services import jobs as job_service
from tests.app_support import make_app
from tests.engine_support import NOW, add_policy, all_runs, archived, make_orders, old_dates, source_rows


def test_one_failing_table_is_recorded_and_the_others_still_run(app, source_engine, archive_engine):
    make_orders(source_engine, old_dates(9) + [NOW], name="orders")
    make_orders(source_engine, old_dates(3), name="customers")
    make_orders(source_engine, old_dates(2), name="zeta")
    for t in ("orders", "customers", "zeta"):
        add_policy(app, t)
    with source_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE customers")  # dropped after its policy was created

    with app.app_context():
        report = job_service.run_archive(trigger="cli", now=NOW)

    by_table = {o.table_name: o for o in report.outcomes}
    assert [o.table_name for o in report.outcomes] == ["customers", "orders", "zeta"]
    assert by_table["customers"].status == "failed"
    assert by_table["customers"].error == "source table 'customers' does not exist"
    assert by_table["orders"].status == "succeeded" and by_table["orders"].rows == 9
    assert by_table["zeta"].status == "succeeded" and by_table["zeta"].rows == 2
    assert not report.ok and len(report.failed) == 1
    runs = {r.table_name: r for r in all_runs(app)}
    assert runs["customers"].status == "failed" and "does not exist" in runs["customers"].error
    assert runs["orders"].status == "succeeded" and runs["orders"].trigger == "cli"
    assert (runs["orders"].rows_read, runs["orders"].rows_written, runs["orders"].rows_deleted,
            runs["orders"].batches) == (9, 9, 9, 3)
    assert runs["orders"].finished_at is not None and runs["orders"].kind == "archive"
    assert len(archived(archive_engine, "orders")) == 9


def test_bad_date_column_and_missing_primary_key_fail_with_clear_errors(app, source_engine):
    make_orders(source_engine, old_dates(2), name="orders")
    with source_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE nokey (created_at TIMESTAMP, msg TEXT)")
    add_policy(app, "orders", date_column="shipped_at")
    add_policy(app, "nokey")
    with app.app_context():
        report = job_service.run_archive(trigger="scheduler", now=NOW)
    errors = {o.table_name: o.error for o in report.outcomes}
    assert errors["orders"] == "column 'shipped_at' does not exist in source table 'orders'"
    assert "no primary key" in errors["nokey"]
    assert len(source_rows(source_engine, "orders")) == 2


def test_unreachable_source_database_fails_each_table_without_leaking_details(databases):
    app = make_app(databases, SOURCE_DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/none")
    with app.app_context():
        from archiver.services import database
        database.init_db()
    add_policy(app, "orders")
    add_policy(app, "customers")
    with app.app_context():
        report = job_service.run_archive(trigger="cli", now=NOW)
    assert [o.status for o in report.outcomes] == ["failed", "failed"]
    for o in report.outcomes:
        assert o.error.startswith("source database error")
        assert "127.0.0.1" not in o.error and "secret" not in o.error and "SELECT" not in o.error
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_a_table_held_by_another_run_is_skipped_with_who_holds_it(app, source_engine, archive_engine):
    make_orders(source_engine, old_dates(5))
    add_policy(app, "orders")
    other = TableLock(archive_engine, "orders", holder="other-process")
    assert other.acquire("archive")
    other.attach(4242)
    try:
        with app.app_context():
            report = job_service.run_archive(trigger="cli", now=NOW)
        (outcome,) = report.outcomes
        assert outcome.status == "skipped" and outcome.error.startswith("locked by another runner: ")
        assert "archive run 4242" in outcome.error and f"pid {other.pid}" in outcome.error
        assert outcome.holder.run_id == 4242
        assert report.ok and report.held == [outcome]  # a skip is not a failure (the CLI has its own code)
        assert len(source_rows(source_engine, "orders")) == 5
        (run,) = all_runs(app)
        assert run.status == "skipped" and run.details["held_by"]["run_id"] == 4242
        # Purge and restore of the table take the same lock.
        with app.app_context():
            purge = job_service.run_purge(trigger="cli", now=NOW)
        assert purge.outcomes[0].status == "skipped"
    finally:
        other.release()
    with app.app_context():
        assert job_service.run_archive(trigger="cli", now=NOW).outcomes[0].rows == 5
    assert other.current_holder() is None  # released after the run


def test_an_archive_run_checks_its_policy_once(app, source_engine, archive_engine, monkeypatch):
    """The plan made to count the rows (the run's rows_total) is the one the run moves them by: the
    source table is reflected once per run, and the count and the move agree."""
    from archiver.engine import check

    reflected: list[str] = []
    reflect = check.reflect_source_table

    def counting(conn, table_name, ops):
        reflected.append(table_name)
        return reflect(conn, table_name, ops)

    monkeypatch.setattr(check, "reflect_source_table", counting)
    make_orders(source_engine, old_dates(4) + [NOW])
    add_policy(app, "orders")
    with app.app_context():
        report = job_service.run_archive(trigger="cli", now=NOW)
    assert reflected == ["orders"]
    assert report.outcomes[0].status == "succeeded" and report.outcomes[0].rows == 4
    (run,) = all_runs(app)
    assert run.rows_total == 4 and run.rows_deleted == 4
    assert len(archived(archive_engine, "orders")) == 4


def test_dry_run_is_recorded_and_moves_nothing(app, source_engine, archive_engine):
    make_orders(source_engine, old_dates(5) + [NOW])
    add_policy(app, "orders")
    with app.app_context():
        report = job_service.run_archive(trigger="cli", dry_run=True, now=NOW)
    assert report.outcomes[0].rows == 5 and report.outcomes[0].status == "succeeded"
    assert len(source_rows(source_engine, "orders")) == 6
    assert archived(archive_engine, "orders") == {}
    (run,) = all_runs(app)
    assert run.dry_run is True and run.rows_read == 5 and run.rows_deleted == 0


def test_disabled_policies_are_not_run_and_unknown_tables_are_refused(app, source_engine):
    make_orders(source_engine, old_dates(3))
    add_policy(app, "orders", enabled=False)
    with app.app_context():
        assert job_service.run_archive(trigger="cli", now=NOW).outcomes == []
        with pytest.raises(job_service.UnknownPolicy, match="disabled"):
            job_service.run_archive("orders", trigger="cli", now=NOW)
        with pytest.raises(job_service.UnknownPolicy, match="no policy"):
            job_service.run_archive("nope", trigger="cli", now=NOW)
    assert all_runs(app) == []


def test_purge_job_records_a_run_per_table(app, source_engine, archive_engine):
    make_orders(source_engine, old_dates(4), name="orders")
    add_policy(app, "orders", delete_after_days=10)
    with app.app_context():
        job_service.run_archive(trigger="cli", now=NOW)
        kept = job_service.run_purge(trigger="cli", now=NOW + timedelta(days=10))
        gone = job_service.run_purge(trigger="cli", now=NOW + timedelta(days=10, seconds=1))
    assert kept.outcomes[0].rows == 0  # archived exactly 10 days ago: kept
    assert gone.outcomes[0].rows == 4
    assert archived(archive_engine, "orders") == {}
    runs = all_runs(app)
    assert [(r.kind, r.status, r.rows_deleted) for r in runs] == [
        ("archive", "succeeded", 4), ("purge", "succeeded", 0), ("purge", "succeeded", 4)]


def test_stop_request_marks_the_run_interrupted_and_skips_remaining_tables(app, source_engine):
    make_orders(source_engine, old_dates(10), name="a_orders")
    make_orders(source_engine, old_dates(10), name="b_orders")
    add_policy(app, "a_orders", batch_size=3)
    add_policy(app, "b_orders", batch_size=3)
    seen = []
    with app.app_context():
        report = job_service.run_archive(trigger="cli", now=NOW, on_batch=seen.append,
                                         should_stop=lambda: len(seen) >= 2)
    assert report.stopped
    # After batch 2 (PostgreSQL pipelines: batch 3 may be in flight by then, and is finished).
    ((table, status, rows),) = [(o.table_name, o.status, o.rows) for o in report.outcomes]
    assert (table, status) == ("a_orders", "interrupted") and rows in ((6, 9) if report.outcomes[0].pipelined else (6,))
    assert len(source_rows(source_engine, "a_orders")) == 10 - rows
    assert len(source_rows(source_engine, "b_orders")) == 10
    (run,) = all_runs(app)
    assert run.status == "interrupted" and run.rows_deleted == rows and run.batches >= 2


def test_preview_route(app, client, accounts, source_engine):
    now = datetime.now(timezone.utc)
    make_orders(source_engine, old_dates(3) + [now, now])
    add_policy(app, "orders")
    admin = accounts.admin()
    resp = client.post("/config/orders/preview", headers=admin)
    after = datetime.now(timezone.utc)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["table_name"] == "orders" and body["date_column"] == "created_at"
    assert body["would_archive"] == 3
    cutoff = datetime.fromisoformat(body["cutoff"])
    # The cutoff is the server's "now − 30 days" truncated to the second, taken during the request.
    assert now.replace(microsecond=0) - timedelta(days=30) <= cutoff <= after - timedelta(days=30)
    assert len(source_rows(source_engine, "orders")) == 5
    assert client.post("/config/nope/preview", headers=admin).status_code == 404
    user = accounts.user("bob", tables=["orders"])
    assert client.post("/config/orders/preview", headers=user).status_code == 403
    assert client.post("/config/orders/preview").status_code == 401
    with source_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE orders")
    resp = client.post("/config/orders/preview", headers=admin)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["message"] == "source table 'orders' does not exist"
    spec = client.get("/openapi.json").get_json()
    assert "/config/{table_name}/preview" in spec["paths"]


def test_scheduler_jobs_are_registered_with_the_configured_schedule(databases):
    app = make_app(databases, ARCHIVE_INTERVAL_SECONDS=120, PURGE_CRON_HOUR=3, SCHEDULER_MISFIRE_GRACE_SECONDS=45)
    tick = scheduler.get_job("archival_tick")
    purge = scheduler.get_job("purge_daily")
    assert tick.trigger.interval == timedelta(seconds=120)
    assert str(purge.trigger.fields[5]) == "3" and str(purge.trigger.fields[6]) == "0"  # hour, minute
    assert str(purge.trigger.timezone) == "UTC"
    for job in (tick, purge):
        assert job.max_instances == 1 and job.coalesce is True and job.misfire_grace_time == 45
    make_app(databases)  # registering again replaces, never duplicates
    assert [j.id for j in scheduler.get_jobs()].count("archival_tick") == 1
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_scheduled_tick_runs_inside_an_app_context_and_records_scheduler_runs(app, source_engine, archive_engine):
    make_orders(source_engine, old_dates(3))
    add_policy(app, "orders", archive_after_days=0)
    scheduler.app = app
    scheduler_jobs.archival_tick()
    scheduler_jobs.purge_daily()  # nothing expired yet
    scheduler_jobs.archival_tick()  # nothing left to move
    runs = all_runs(app)
    # Ticks that find nothing to move record no run, only the time of the check.
    assert [(r.kind, r.trigger, r.status) for r in runs] == [("archive", "scheduler", "succeeded")]
    assert runs[0].rows_total == 3 and runs[0].rows_deleted == 3
    assert len(archived(archive_engine, "orders")) == 3
    with app.app_context():
        checks = {c.kind: (c.outcome, c.run_id) for c in db.session.execute(sa.select(ScheduleCheck)).scalars()}
    assert checks == {"archive": ("nothing to move", runs[0].id), "purge": ("nothing to move", None)}


def test_archive_schema_is_created_by_init_db(archive_engine):
    names = set(sa.inspect(archive_engine).get_table_names())
    assert {schema.archived_rows.name, schema.table_locks.name, "schedule_checks"} <= names


def test_a_run_its_own_budget_ends_early_is_partial_with_the_reason(app, source_engine):
    """Not a stop request: the policy's row budget ends the run early; it is recorded `partial`, saying why."""
    make_orders(source_engine, old_dates(20))
    add_policy(app, "orders", batch_size=4, batch_mode="fixed", max_rows_per_run=8)
    with app.app_context():
        report = job_service.run_archive(trigger="cli", now=NOW)
    (outcome,) = report.outcomes
    assert outcome.status == "partial" and outcome.error == "stopped early: row budget reached (8 rows)"
    assert report.ok and not report.stopped
    (run,) = all_runs(app)
    assert run.status == "partial" and run.rows_deleted == outcome.rows and 8 <= outcome.rows < 20
