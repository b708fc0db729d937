"""Monitoring (issue 16): GET /metrics against the run records, the archive lag, the request and run
log lines (text and JSON), and waitress's "serving on" line."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from archiver.engine.archive import oldest_archivable
from archiver.engine.policy import PolicySpec
from archiver.extensions import db, scheduler
from archiver.models import ArchivePolicy
from archiver.scheduler import jobs as scheduler_jobs
from archiver.services import jobs as job_service
from archiver.services import monitoring
from tests.app_support import JWT_SECRET, make_app
from tests.auth_support import assert_error, bearer, login
from tests.engine_support import NOW, add_policy, all_runs, make_orders, old_dates, sqlite_only
from tests.monitoring_support import METRICS_TOKEN, scrape, total, value
from tests.run_support import archive_now

ROOT = Path(__file__).resolve().parents[1]
METRICS_ON = pytest.mark.app_config(METRICS_ENABLED=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# --- /metrics: off, token -----------------------------------------------------------------

@sqlite_only
def test_metrics_are_off_by_default_a_json_404_and_not_an_api_operation(app, client):
    assert app.config["METRICS_ENABLED"] is False
    assert_error(client.get("/metrics"), 404, "not_found")
    assert "/metrics" not in client.get("/openapi.json").get_json()["paths"]


@sqlite_only
@pytest.mark.app_config(METRICS_ENABLED=True, METRICS_TOKEN=METRICS_TOKEN)
def test_a_metrics_token_is_required_when_set(client, accounts):
    assert_error(client.get("/metrics"), 401, "metrics_token")
    assert_error(client.get("/metrics", headers=bearer("wrong-token")), 401, "metrics_token")
    assert_error(client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}), 401)
    assert_error(client.get("/metrics", headers=bearer(METRICS_TOKEN + "x")), 401)
    # A user's access token is not the metrics token.
    assert_error(client.get("/metrics", headers=accounts.admin()), 401)
    samples = scrape(client, bearer(METRICS_TOKEN))
    assert value(samples, "archiver_http_requests_total", method="GET", route="/metrics", status="401") == 5


@sqlite_only
@METRICS_ON
def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(client):
    resp = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.status_code == 200 and resp.mimetype == "application/openmetrics-text"
    assert resp.get_data(as_text=True).rstrip().endswith("# EOF")


# --- /metrics against the run records -----------------------------------------------------

@METRICS_ON
def test_run_and_row_counters_match_the_run_records(app, client, runner, accounts, source_engine):
    make_orders(source_engine, old_dates(9) + [NOW], name="orders")
    make_orders(source_engine, old_dates(5), name="events")
    make_orders(source_engine, old_dates(2), name="gone")
    add_policy(app, "orders")
    add_policy(app, "events", sleep_ms=5, batch_mode="fixed", batch_size=2)
    add_policy(app, "gone")
    with source_engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE gone")  # its runs fail
    with app.app_context():
        job_service.run_archive("orders", trigger="cli", dry_run=True, now=NOW)
        job_service.run_archive(trigger="cli", now=NOW)  # orders, events; gone fails
        job_service.run_purge("orders", trigger="cli", now=utcnow() + timedelta(days=11))
    result = runner.invoke(args=["purge-now", "--table", "events"])
    assert result.exit_code == 0, result.output
    admin = accounts.admin()
    assert client.get("/runs/", headers=admin).status_code == 200
    client.get("/health")
    client.get("/no/such/page")

    samples = scrape(client)
    runs = all_runs(app)
    assert {r.status for r in runs} >= {"succeeded", "failed"} and any(r.dry_run for r in runs)
    by_kind_status: dict[tuple[str, str], int] = {}
    for r in runs:
        by_kind_status[(r.kind, r.status)] = by_kind_status.get((r.kind, r.status), 0) + 1
    counted = {(dict(lbl)["kind"], dict(lbl)["status"]): v for (name, lbl), v in samples.items()
               if name == "archiver_runs_total"}
    assert counted == by_kind_status
    for table in ("orders", "events"):
        archive_runs = [r for r in runs if r.table_name == table and r.kind == "archive" and not r.dry_run]
        purge_runs = [r for r in runs if r.table_name == table and r.kind == "purge" and not r.dry_run]
        assert value(samples, "archiver_rows_archived_total", table=table) == sum(r.rows_written for r in archive_runs)
        assert value(samples, "archiver_rows_skipped_total", table=table) == sum(r.rows_skipped for r in archive_runs)
        assert value(samples, "archiver_rows_purged_total", table=table) == sum(r.rows_deleted for r in purge_runs)
        for kind, kind_runs in (("archive", archive_runs), ("purge", purge_runs)):
            assert value(samples, "archiver_run_duration_seconds_count", kind=kind, table=table) == len(kind_runs)
            last = max(as_utc(r.finished_at) for r in kind_runs if r.status == "succeeded")
            gauge = value(samples, "archiver_last_success_timestamp_seconds", kind=kind, table=table)
            assert abs(gauge - last.timestamp()) < 1.0
    assert value(samples, "archiver_rows_archived_total", table="orders") == 9
    assert value(samples, "archiver_rows_purged_total", table="orders") == 9
    assert value(samples, "archiver_rows_purged_total", table="events") == 5
    # The sleeps between the batches of events, as its run record has them.
    (events_run,) = [r for r in runs if r.table_name == "events" and r.kind == "archive"]
    slept = events_run.details["throttle"]["slept_seconds"]
    assert slept > 0
    assert value(samples, "archiver_throttle_sleep_seconds_total", table="events") == pytest.approx(slept)
    # The failed table has no rows and no success.
    assert value(samples, "archiver_last_success_timestamp_seconds", kind="archive", table="gone") is None
    # Requests, by URL rule and status.
    assert value(samples, "archiver_http_requests_total", method="GET", route="/runs/", status="200") == 1
    assert value(samples, "archiver_http_requests_total", method="GET", route="/health", status="200") == 1
    assert value(samples, "archiver_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(samples, "archiver_http_request_duration_seconds_count", method="GET", route="/runs/") == 1
    assert all("/no/such/page" not in str(lbl) for _, lbl in samples)
    # The scrape itself is counted by the next one.
    again = scrape(client)
    assert value(again, "archiver_http_requests_total", method="GET", route="/metrics", status="200") == 1


@METRICS_ON
def test_the_last_success_comes_from_the_run_history_whichever_process_ran_it(app, client, databases,
                                                                                 source_engine):
    """archive-now in a process of its own (cron) counts in no served counter, but its success is
    the table's last success on every process's /metrics, and still after a restart."""
    make_orders(source_engine, old_dates(4), name="orders")
    make_orders(source_engine, old_dates(2), name="events")
    add_policy(app, "orders")
    add_policy(app, "events")
    cli = archive_now(databases, "--table", "orders")
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, out + err
    (run,) = [r for r in all_runs(app) if r.table_name == "orders"]
    assert run.status == "succeeded" and run.pid == cli.pid
    samples = scrape(client)
    assert value(samples, "archiver_last_success_timestamp_seconds", kind="archive", table="orders") \
        == pytest.approx(as_utc(run.finished_at).timestamp(), abs=1e-3)
    assert value(samples, "archiver_runs_total", kind="archive", status="succeeded") is None  # not this process's
    assert value(samples, "archiver_last_success_timestamp_seconds", kind="archive", table="events") is None
    with app.app_context():
        job_service.run_archive("events", trigger="cli", dry_run=True, now=NOW)  # a dry run is no success
    restarted = make_app(databases, METRICS_ENABLED=True)
    samples = scrape(restarted.test_client())
    assert value(samples, "archiver_last_success_timestamp_seconds", kind="archive", table="orders") \
        == pytest.approx(as_utc(run.finished_at).timestamp(), abs=1e-3)
    assert value(samples, "archiver_last_success_timestamp_seconds", kind="archive", table="events") is None


@METRICS_ON
def test_a_scrape_without_the_run_history_still_serves_the_other_metrics(app, client, caplog):
    with app.app_context():
        with db.engines[None].begin() as conn:
            conn.exec_driver_sql("DROP TABLE archive_runs")  # the query of the last successes fails
    client.get("/health")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert 'archiver_http_requests_total{method="GET",route="/health",status="200"} 1.0' in text
    assert "# TYPE archiver_last_success_timestamp_seconds gauge" in text
    assert "archiver_last_success_timestamp_seconds{" not in text
    assert "could not read the last succeeded runs for /metrics" in caplog.text


@METRICS_ON
def test_runs_over_the_api_and_restores_are_counted(app, client, accounts, source_engine):
    make_orders(source_engine, old_dates(4))
    add_policy(app, "orders")
    admin = accounts.admin()
    resp = client.post("/runs", json={"kind": "archive", "table_name": "orders"}, headers=admin)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run_id = resp.get_json()["run_id"]
    deadline = time.monotonic() + 30
    while client.get(f"/runs/{run_id}", headers=admin).get_json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    resp = client.post("/archives/orders/restore", json={"all": True}, headers=admin)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["restored"] == 4
    samples = scrape(client)
    assert value(samples, "archiver_rows_archived_total", table="orders") == 4
    assert value(samples, "archiver_rows_restored_total", table="orders") == 4
    assert value(samples, "archiver_runs_total", kind="restore", status="succeeded") == 1
    assert value(samples, "archiver_runs_total", kind="archive", status="succeeded") == 1


@sqlite_only
@METRICS_ON
def test_throttle_pauses_are_counted_by_reason_from_the_run_details(app, client):
    end = monitoring.RunEnd(run_id=1, kind="archive", table_name="orders", trigger="cli", status="partial",
                            dry_run=False, started_at=utcnow() - timedelta(seconds=30), finished_at=utcnow(),
                            rows_written=10, details={"throttle": {"slept_seconds": 1.5, "pauses": {
                                "replica lag": {"count": 2, "seconds": 12.5, "last": "replica lag 9.0 s > 2 s"},
                                "load": {"count": 1, "seconds": 3.0, "last": "load 40 active sessions > 30"}}}})
    with app.app_context():
        monitoring.run_ended(end)
        monitoring.run_ended(end)
    samples = scrape(client)
    assert value(samples, "archiver_throttle_pause_seconds_total", table="orders", reason="replica_lag") == 25.0
    assert value(samples, "archiver_throttle_pause_seconds_total", table="orders", reason="load") == 6.0
    assert value(samples, "archiver_throttle_pauses_total", table="orders", reason="replica_lag") == 4
    assert value(samples, "archiver_throttle_sleep_seconds_total", table="orders") == 3.0
    assert value(samples, "archiver_runs_total", kind="archive", status="partial") == 2
    assert total(samples, "archiver_run_duration_seconds_count") == 2


@sqlite_only
def test_each_app_counts_in_its_own_registry(databases):
    first, second = make_app(databases, METRICS_ENABLED=True), make_app(databases, METRICS_ENABLED=True)
    first.test_client().get("/health")
    assert value(scrape(first.test_client()), "archiver_http_requests_total", method="GET", route="/health",
                 status="200") == 1
    assert value(scrape(second.test_client()), "archiver_http_requests_total", method="GET", route="/health",
                 status="200") is None
    for app in (first, second):
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


# --- archive lag ------------------------------------------------------------------------

@METRICS_ON
def test_the_archive_lag_after_a_tick_is_the_age_of_the_oldest_row_left(app, client, source_engine):
    now = utcnow().replace(microsecond=0)
    make_orders(source_engine, [now - timedelta(days=60, minutes=i) for i in range(8)], name="slow")
    make_orders(source_engine, [now - timedelta(days=45)] * 3, name="done")
    make_orders(source_engine, [now - timedelta(days=5)] * 2, name="young")
    add_policy(app, "slow", batch_mode="fixed", batch_size=2, max_rows_per_run=2)  # leaves rows behind
    add_policy(app, "done")
    add_policy(app, "young")
    add_policy(app, "off", enabled=False)
    scheduler.app = app
    before = utcnow()
    scheduler_jobs.archival_tick()
    after = utcnow()
    with source_engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT MIN(created_at) FROM slow")).scalar()
        left = conn.execute(sa.text("SELECT COUNT(*) FROM slow")).scalar()
    oldest_left = as_utc(datetime.fromisoformat(raw) if isinstance(raw, str) else raw)
    assert 0 < left < 8
    samples = scrape(client)
    lag = value(samples, "archiver_archive_lag_seconds", table="slow")
    assert (before - oldest_left).total_seconds() - 1 <= lag <= (after - oldest_left).total_seconds() + 1
    assert lag > 59 * 86400
    assert value(samples, "archiver_archive_lag_seconds", table="done") == 0
    assert value(samples, "archiver_archive_lag_seconds", table="young") == 0
    assert value(samples, "archiver_archive_lag_seconds", table="off") is None
    measured = value(samples, "archiver_archive_lag_measured_timestamp_seconds")
    assert before.timestamp() - 1 <= measured <= after.timestamp() + 1
    runs = {r.table_name: r for r in all_runs(app)}
    assert runs["slow"].status == "partial" and runs["done"].status == "succeeded"
    # A policy disabled since drops out of the gauge.
    with app.app_context():
        db.session.execute(sa.update(ArchivePolicy).where(ArchivePolicy.table_name == "slow").values(enabled=False))
        db.session.commit()
        assert set(monitoring.measure_archive_lag()) == {"done", "young"}
    assert value(scrape(client), "archiver_archive_lag_seconds", table="slow") is None


def test_oldest_archivable_row_on_each_backend(engines):
    dates = [NOW - timedelta(days=40), NOW - timedelta(days=90, hours=3), None, NOW - timedelta(days=2),
             NOW - timedelta(days=70)]
    make_orders(engines.source, dates, statuses=["closed", "open", "closed", "closed", "closed"])
    oldest, cutoff = oldest_archivable(engines.source, PolicySpec("orders", archive_after_days=30), now=NOW)
    assert cutoff == NOW - timedelta(days=30)
    assert oldest == NOW - timedelta(days=90, hours=3) and oldest.tzinfo is not None
    # The policy's criteria count: the open row does not qualify.
    spec = PolicySpec("orders", archive_after_days=30, custom_criteria="status = 'closed'")
    assert oldest_archivable(engines.source, spec, now=NOW)[0] == NOW - timedelta(days=70)
    # No row qualifies.
    assert oldest_archivable(engines.source, PolicySpec("orders", archive_after_days=365), now=NOW)[0] is None


@sqlite_only
def test_sqlite_text_dates_are_compared_by_the_instant_they_name(engines):
    with engines.source.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, created_at TEXT)")
        conn.exec_driver_sql("INSERT INTO notes VALUES (1, '2024-01-01 09:00:00'), "
                             "(2, '2024-01-01T10:00:00+02:00'), (3, '2024-01-02'), (4, '2025-06-15 11:00:00')")
    oldest, _ = oldest_archivable(engines.source, PolicySpec("notes", archive_after_days=30), now=NOW)
    # 10:00+02:00 is 08:00 UTC: older than 09:00, though its text sorts after it.
    assert oldest == datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc)


# --- logs ----------------------------------------------------------------------------

def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@sqlite_only
@pytest.mark.app_config(LOG_FORMAT="json")
def test_json_log_lines_per_request_and_per_run(app, client, accounts, source_engine, capsys):
    make_orders(source_engine, old_dates(3))
    add_policy(app, "orders")
    user_id = accounts.create("admin", role="admin")
    capsys.readouterr()
    tokens = login(client, "admin").get_json()
    assert client.get("/runs/?limit=5", headers=bearer(tokens["access_token"])).status_code == 200
    with app.app_context():
        report = job_service.run_archive(trigger="cli", now=NOW)
    (run_id,) = [o.run_id for o in report.outcomes]
    lines = json_lines(capsys.readouterr().err)

    requests = [line for line in lines if line.get("event") == "http.request"]
    assert [(r["method"], r["route"], r["status"]) for r in requests] == [("POST", "/auth/login", 200),
                                                                        ("GET", "/runs/", 200)]
    assert requests[0]["user_id"] is None and requests[1]["user_id"] == str(user_id)
    assert all(isinstance(r["duration_ms"], float) and r["logger"] == "archiver.requests" and r["level"] == "INFO"
               and r["time"] for r in requests)
    assert "limit=5" not in json.dumps(requests)

    started = [line for line in lines if line.get("event") == "run.started"]
    finished = [line for line in lines if line.get("event") == "run.finished"]
    assert [(s["run_id"], s["table"], s["kind"], s["trigger"]) for s in started] == [(run_id, "orders", "archive",
                                                                                     "cli")]
    (end,) = finished
    assert (end["run_id"], end["table"], end["kind"], end["status"]) == (run_id, "orders", "archive", "succeeded")
    assert (end["rows_read"], end["rows_written"], end["rows_deleted"]) == (3, 3, 3)
    assert end["duration_s"] >= 0 and end["logger"] == "archiver.runs"
    whole = json.dumps(lines)
    assert tokens["access_token"] not in whole and tokens["refresh_token"] not in whole
    assert "correct-horse" not in whole


@sqlite_only
def test_a_failed_run_logs_a_warning_and_text_lines_are_readable(app, client, source_engine, capsys):
    add_policy(app, "missing")
    capsys.readouterr()
    client.get("/health")
    with app.app_context():
        job_service.run_archive(trigger="cli", now=NOW)
    err = capsys.readouterr().err
    assert not json_lines(err)
    assert "INFO archiver.requests: GET /health 200 " in err
    failed = [line for line in err.splitlines() if "archiver.runs" in line and "failed" in line]
    assert failed and " WARNING " in failed[0]
    assert "source table 'missing' does not exist" in failed[0]


@sqlite_only
def test_log_level_sets_the_services_loggers_not_the_libraries(databases):
    app = make_app(databases, LOG_LEVEL="WARNING")
    try:
        assert not logging.getLogger("archiver.runs").isEnabledFor(logging.INFO)
        make_app(databases)
        assert logging.getLogger("archiver.runs").isEnabledFor(logging.INFO)
        assert logging.getLogger("waitress").isEnabledFor(logging.INFO)
        assert not logging.getLogger("sqlalchemy.engine").isEnabledFor(logging.INFO)
        ours = [h for h in logging.getLogger().handlers if getattr(h, "archiver", False)]
        assert len(ours) == 1  # a second app replaces the first one's handler
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@sqlite_only
def test_the_served_process_says_where_it_listens_and_logs_requests_as_json(databases, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "FLASK_"))}
    env.update({"ARCHIVER_ENV": "testing", "SOURCE_DATABASE_URL": databases.source_url,
                "ARCHIVE_DATABASE_URL": databases.archive_url, "JWT_SECRET_KEY": JWT_SECRET,
                "LOG_FORMAT": "json", "METRICS_ENABLED": "true", "PYTHONPATH": str(ROOT)})
    proc = subprocess.Popen([sys.executable, "-m", "archiver.serve", "--port", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listening = next(line for line in map(json.loads, proc.stderr) if line["logger"] == "waitress")
        assert listening["message"].startswith("archiver serving on http://")
        url = listening["message"].rsplit(" ", 1)[1]
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            assert resp.status == 200
        line = next(line for line in map(json.loads, proc.stderr) if line.get("event") == "http.request")
        assert (line["route"], line["status"], line["user_id"]) == ("/health", 200, None)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()
        proc.stdout.close()
