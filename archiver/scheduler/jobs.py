"""Scheduled jobs. Each runs inside an app context and calls a service."""
from __future__ import annotations

import logging

from apscheduler.jobstores.base import JobLookupError
from flask import Flask

from ..extensions import scheduler
from ..services import jobs as job_service
from ..services import monitoring, retention, scheduler_info

log = logging.getLogger(__name__)


ARCHIVAL_TICK = "archival_tick"
PURGE_DAILY = "purge_daily"


def register_jobs(app: Flask) -> None:
    """Add the recurring jobs (archival tick, daily purge) to the scheduler.

    Both run at most one instance at a time, coalesce missed runs into one and
    are skipped if more than SCHEDULER_MISFIRE_GRACE_SECONDS late. Safe to call
    again (jobs are replaced, not duplicated).
    """
    grace = app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"]
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": grace, "replace_existing": True}
    for job_id in (ARCHIVAL_TICK, PURGE_DAILY):
        try:
            scheduler.remove_job(job_id)  # also drops a pending (not yet started) definition
        except JobLookupError:
            pass
    scheduler.add_job(id=ARCHIVAL_TICK, func=archival_tick, name="archive old rows of every enabled policy",
                      trigger="interval", seconds=app.config["ARCHIVE_INTERVAL_SECONDS"], **common)
    scheduler.add_job(id=PURGE_DAILY, func=purge_daily, name="purge archived rows past their retention",
                      trigger="cron", hour=app.config["PURGE_CRON_HOUR"], minute=0, timezone="UTC",
                      **common)


def archival_tick() -> None:
    """Scheduled: archive every enabled policy's table (runs recorded with trigger 'scheduler'),
    then measure each table's archive lag (metrics on: ``archiver_archive_lag_seconds``)."""
    _run_scheduled("archive")
    app = scheduler.app
    if app is None:  # pragma: no cover - the scheduler was reset meanwhile
        return
    with app.app_context():
        try:
            monitoring.measure_archive_lag()
        except Exception:  # noqa: BLE001 - keep the scheduler alive; the next tick measures again
            log.exception("measuring the archive lag failed")


def purge_daily() -> None:
    """Scheduled: purge expired archived rows of every enabled policy's table, then the audit
    events and login sessions past their retention."""
    _run_scheduled("purge")
    app = scheduler.app
    if app is None:  # pragma: no cover - the scheduler was reset meanwhile
        return
    with app.app_context():
        try:
            deleted = retention.prune_security_records()
        except Exception:  # noqa: BLE001 - keep the scheduler alive; tomorrow retries
            log.exception("scheduled pruning of audit events and login sessions failed")
            return
        log.info("scheduled retention: %d audit event(s), %d expired login session(s) deleted",
                 deleted["audit_events"], deleted["token_families"])


def _run_scheduled(kind: str) -> None:
    app = scheduler.app
    if app is None:  # pragma: no cover - the scheduler was reset while the job was due
        return
    with app.app_context():
        try:
            runner = job_service.run_archive if kind == "archive" else job_service.run_purge
            report = runner(trigger="scheduler")
        except Exception:  # noqa: BLE001 - keep the scheduler alive; the next tick retries
            log.exception("scheduled %s job failed before processing tables", kind)
            return
        log.info("scheduled %s job: %d rows over %d table(s), %d failed", kind, report.total_rows,
                 len(report.outcomes), len(report.failed))


def scheduler_test_job(job_id: str, scheduled_for: str | None = None) -> None:
    """The one-off test job (POST /system/scheduler/test): records that it ran, inside an app context."""
    app = scheduler.app
    if app is None:  # the scheduler was reset while this job was due
        return
    with app.app_context():
        run = scheduler_info.record_test_run(job_id, scheduled_for)
    log.info("scheduler test job %s ran (archive db: %s)", job_id, run["archive_db"])
