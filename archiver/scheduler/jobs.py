"""Scheduled jobs. Each runs inside an app context and calls a service."""
from __future__ import annotations

import logging

from flask import Flask

from ..extensions import scheduler
from ..services import scheduler_info

log = logging.getLogger(__name__)


def register_jobs(app: Flask) -> None:
    """Add the recurring jobs (archival tick, daily purge) to the scheduler."""
    # The archival-engine issue adds archival_tick and purge_daily here.
    return None


def scheduler_test_job(job_id: str, scheduled_for: str | None = None) -> None:
    """The one-off test job (POST /system/scheduler/test): records that it ran, inside an app context."""
    app = scheduler.app
    if app is None:  # the scheduler was reset while this job was due
        return
    with app.app_context():
        run = scheduler_info.record_test_run(job_id, scheduled_for)
    log.info("scheduler test job %s ran (archive db: %s)", job_id, run["archive_db"])
