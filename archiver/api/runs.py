"""/runs: the history of archive, purge and restore runs, live progress, and starting and
cancelling runs (admin)."""
from __future__ import annotations

from typing import Any

from flask_jwt_extended import current_user
from marshmallow import RAISE

from ..errors import NotFound
from ..services import audit
from ..services import jobs as job_service
from ..services import runs as run_service
from .docs import error_responses
from .openapi import Blueprint
from .schemas.runs import RunListArgsSchema, RunPageSchema, RunSchema, RunStartedSchema, StartRunSchema
from .security import admin_required, current_actor

blp = Blueprint("runs", __name__, url_prefix="/runs",
                description="Run history, live progress, and starting or cancelling a run")

_ERRORS = {
    400: "Bad filter, page parameter or body; `details` names the bad field",
    401: "Missing, invalid or expired access token",
    403: "Admin role required",
    404: "No such run, or no enabled policy for the table",
    409: "The table is held by another run (`details.holder`: host, pid, run id, since), "
         "or the run is not running",
    503: "A database is unreachable, or the service is shutting down",
}


def _errors(*statuses: int):
    return error_responses(blp, statuses, _ERRORS)


@blp.route("/", strict_slashes=False, methods=["GET"])
@blp.response(200, RunPageSchema)
@_errors(400, 401, 403)
@admin_required
@blp.arguments(RunListArgsSchema, location="query", as_kwargs=True, unknown=RAISE)
def list_runs(**args: Any):
    """Runs newest first, filtered by table_name, kind and status; keyset-paginated with before_id."""
    items, next_before = run_service.list_runs(**args)
    return {"items": items, "next_before_id": next_before, "limit": args.get("limit", 50)}


@blp.route("/", strict_slashes=False, methods=["POST"])
@blp.response(202, RunStartedSchema)
@_errors(400, 401, 403, 404, 409, 415, 503)
@admin_required
@blp.arguments(StartRunSchema)
def start_run(body: dict[str, Any]):
    """Start an archive or purge run of one table in the background of this process (202).

    The table's lock is taken before answering: a table another run holds is a
    409 naming that run (host, pid, run id, since). Follow the run at `url`
    (`GET /runs/{id}`: live counters, rate and ETA); stop it with
    `POST /runs/{id}/cancel`.
    """
    run_id = job_service.start_background(body["kind"], body["table_name"], dry_run=body["dry_run"],
                                          trigger=run_service.trigger_for_user(current_user.username))
    audit.record_run_started(current_actor(), run_id, body["kind"], body["table_name"],
                             options={"dry_run": body["dry_run"]})
    return {"run_id": run_id, "url": f"/runs/{run_id}", "status": "running", "table_name": body["table_name"],
            "kind": body["kind"], "dry_run": body["dry_run"]}


@blp.route("/<id:run_id>", methods=["GET"])
@blp.response(200, RunSchema)
@_errors(401, 403, 404)
@admin_required
def get_run(run_id: int):
    """One run by id: counters as of its last committed batch, rate and ETA while it runs."""
    run = run_service.get_run(run_id)
    if run is None:
        raise NotFound("No run with this id")
    return run


@blp.route("/<id:run_id>/cancel", methods=["POST"])
@blp.response(202, RunSchema)
@_errors(401, 403, 404, 409)
@admin_required
def cancel_run(run_id: int):
    """Ask a running run to stop after its current batch; it ends `cancelled` (committed batches stay).

    Seen at once by a run of this process, within about a second by a run of
    another process (the CLI, another service process). 409 if the run is over.
    """
    run = job_service.request_cancel(run_id, current_user.username)
    audit.record_run_cancelled(current_actor(), run_id, run.kind, run.table_name)
    return run
