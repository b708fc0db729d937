"""Scheduled jobs. Each runs inside an app context and calls a service."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from flask import Flask

from ..extensions import scheduler

log = logging.getLogger(__name__)

TEST_JOB_PREFIX = "scheduler_test_"
# Runs of the one-off test job, newest last (kept in memory, per process).
test_job_runs: list[dict] = []


def register_jobs(app: Flask) -> None:
    """Add the recurring jobs (archival tick, daily purge) to the scheduler."""
    # The archival-engine issue adds archival_tick and purge_daily here.
    return None


def scheduler_test_job(job_id: str) -> None:
    with scheduler.app.app_context():
        test_job_runs.append({"job_id": job_id, "ran_at": datetime.now(timezone.utc).isoformat()})
        log.info("scheduler test job %s ran", job_id)


def schedule_test_job(delay_seconds: int = 3) -> dict:
    """Schedule the one-off test job a few seconds from now."""
    now = datetime.now(timezone.utc)
    job_id = f"{TEST_JOB_PREFIX}{int(now.timestamp() * 1000)}"
    run_at = now + timedelta(seconds=delay_seconds)
    scheduler.add_job(id=job_id, func=scheduler_test_job, args=[job_id], trigger="date",
                      run_date=run_at, name="scheduler test job", misfire_grace_time=60,
                      replace_existing=True)
    return {"job_id": job_id, "run_at": run_at.isoformat()}
