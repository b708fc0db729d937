"""Liveness, readiness and the scheduler's job list."""
from __future__ import annotations

from typing import Any, Callable


from flask import current_app

from ..errors import Unavailable
from ..services import readiness, scheduler_info
from .openapi import Blueprint
from .schemas.system import (HealthSchema, ReadySchema, SchedulerStatusSchema, TestJobRequestSchema,
                             TestJobScheduledSchema, TestRunsSchema)
from .docs import error_responses
from .security import admin_required

blp = Blueprint("system", __name__, description="Health, readiness and scheduler")


_ERRORS = {
    400: "Invalid body; `details` names the bad field",
    401: "Missing, invalid or expired access token",
    403: "Admin role required",
    405: "Method not allowed",
    409: "The scheduler is not running in this process",
    415: "Body is not JSON",
    503: "A database is unreachable; `details.failed` names it",
}


def _errors(*statuses: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return error_responses(blp, statuses, _ERRORS)


@blp.route("/health")
@blp.doc(security=[])
@blp.response(200, HealthSchema)
@_errors(405)
def health():
    """Liveness: the process answers (no database access)."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.doc(security=[])
@blp.response(200, ReadySchema)
@_errors(405, 503)
def ready():
    """Readiness: both databases answer, else 503 naming the failed ones.

    Answers within `READY_TIMEOUT_SECONDS` (2 s): a database that has not
    answered by then is reported as `timeout`. One probe at a time is shared by
    every request, so a hanging database never ties up the request threads.
    """
    states = readiness.check(float(current_app.config["READY_TIMEOUT_SECONDS"]))
    failed = [name for name, state in states.items() if state != "ok"]
    if failed:
        raise Unavailable(f"Database unreachable: {', '.join(failed)}", {"failed": failed, "states": states})
    return {"status": "ready", "databases": {"archive": "ok", "source": "ok"}}


@blp.route("/system/scheduler/jobs", methods=["GET"])
@blp.response(200, SchedulerStatusSchema)
@_errors(401, 403)
@admin_required
def scheduler_jobs():
    """The in-process scheduler: running or not, its jobs with trigger and next run time, recent test runs."""
    return scheduler_info.scheduler_status()


@blp.route("/system/scheduler/test", methods=["POST"])
@blp.response(202, TestJobScheduledSchema)
@_errors(400, 401, 403, 409, 415)
@admin_required
@blp.arguments(TestJobRequestSchema, required=False)
def scheduler_test(data: dict[str, Any]):
    """Schedule a one-off test job `delay_seconds` (1-60, default 3) from now.

    Its run shows up in `GET /system/scheduler/test` (and in the job list's
    `test_runs`). 409 if the scheduler is not running in this process.
    """
    return scheduler_info.schedule_test_job(data["delay_seconds"])


@blp.route("/system/scheduler/test", methods=["GET"])
@blp.response(200, TestRunsSchema)
@_errors(401, 403)
@admin_required
def scheduler_test_runs():
    """Recorded runs of the test job in this process (last 20, newest last)."""
    return {"runs": scheduler_info.recorded_test_runs()}
