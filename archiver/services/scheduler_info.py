"""What the in-process scheduler is doing, and a one-off test job to prove it runs.

The scheduler itself is the ``extensions.scheduler`` singleton; the jobs are
defined in ``archiver.scheduler.jobs``. The test job is referenced by its
import path so this layer does not import the scheduler package.
"""
from __future__ import annotations

import threading
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING

import sqlalchemy as sa

from ..errors import Conflict
from ..extensions import db, scheduler
from ..models import ScheduleCheck
from . import database

TEST_JOB_PREFIX = "scheduler_test_"
TEST_JOB_FUNC = "archiver.scheduler.jobs:scheduler_test_job"
MAX_RECORDED_TEST_RUNS = 20

_test_runs: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED_TEST_RUNS)
_test_runs_lock = threading.Lock()


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset, like every timestamp of the API (SQLite's naive values are UTC)."""
    if value is None:
        return None
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value.isoformat()


def _state() -> str:
    state = scheduler.state
    return {STATE_RUNNING: "running", STATE_PAUSED: "paused"}.get(state, "stopped")


def scheduler_status() -> dict[str, Any]:
    """Whether the scheduler runs, its jobs (next run first) and the recorded test runs."""
    jobs = []
    for job in scheduler.get_jobs():
        jobs.append({
            "id": job.id,
            "name": job.name,
            "trigger": str(job.trigger),
            # A job added before start() has no next_run_time attribute yet.
            "next_run_time": _iso(getattr(job, "next_run_time", None)),
            "max_instances": job.max_instances,
            "coalesce": job.coalesce,
            "misfire_grace_time": job.misfire_grace_time,
        })
    jobs.sort(key=lambda j: (j["next_run_time"] is None, j["next_run_time"] or "", j["id"]))
    timezone_name = str(scheduler.scheduler.timezone) if hasattr(scheduler.scheduler, "timezone") else None
    return {"running": scheduler.running, "state": _state(), "timezone": timezone_name,
            "jobs": jobs, "test_runs": recorded_test_runs(), "checks": schedule_checks()}


def schedule_checks() -> list[dict[str, Any]]:
    """The scheduler's last look at each table and kind (a tick that moves nothing records no run)."""
    rows = db.session.execute(sa.select(ScheduleCheck).order_by(ScheduleCheck.table_name,
                                                                ScheduleCheck.kind)).scalars()
    return [{"table_name": r.table_name, "kind": r.kind, "checked_at": _iso(r.checked_at), "outcome": r.outcome,
             "run_id": r.run_id} for r in rows]


def schedule_test_job(delay_seconds: int = 3) -> dict[str, Any]:
    """Schedule the one-off test job ``delay_seconds`` from now; Conflict if the scheduler is not running."""
    if not scheduler.running:
        raise Conflict("The scheduler is not running in this process (is SCHEDULER_ENABLED off?)")
    now = datetime.now(timezone.utc)
    job_id = f"{TEST_JOB_PREFIX}{uuid.uuid4().hex[:12]}"
    run_at = now + timedelta(seconds=delay_seconds)
    scheduler.add_job(id=job_id, func=TEST_JOB_FUNC, kwargs={"job_id": job_id, "scheduled_for": run_at.isoformat()},
                      trigger="date", run_date=run_at, name="scheduler test job",
                      misfire_grace_time=60, coalesce=True, max_instances=1, replace_existing=True)
    return {"job_id": job_id, "run_at": run_at.isoformat(), "delay_seconds": delay_seconds}


def record_test_run(job_id: str, scheduled_for: str | None) -> dict[str, Any]:
    """Called by the test job inside an app context: note that it ran and whether the archive DB answered."""
    try:
        database.ping(None)
        archive_db = "ok"
    except Exception:  # noqa: BLE001 - the test job reports, it never fails
        archive_db = "unreachable"
    run = {"job_id": job_id, "scheduled_for": scheduled_for,
           "ran_at": datetime.now(timezone.utc).isoformat(), "archive_db": archive_db}
    with _test_runs_lock:
        _test_runs.append(run)
    return run


def recorded_test_runs() -> list[dict[str, Any]]:
    """The last test-job runs in this process, newest last."""
    with _test_runs_lock:
        return list(_test_runs)
