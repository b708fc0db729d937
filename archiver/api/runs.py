"""/runs: the history of archive, purge and restore runs (admin)."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE

from ..errors import NotFound
from ..services import runs as run_service
from .openapi import Blueprint, ErrorSchema
from .schemas.runs import RunListArgsSchema, RunPageSchema, RunSchema
from .security import admin_required

blp = Blueprint("runs", __name__, url_prefix="/runs",
                description="Run history: every archive, purge and restore run of every table")


@blp.route("/", strict_slashes=False)
@blp.response(200, RunPageSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Bad filter or page parameter")
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@blp.alt_response(403, schema=ErrorSchema, description="Admin role required")
@admin_required
@blp.arguments(RunListArgsSchema, location="query", as_kwargs=True, unknown=RAISE)
def list_runs(**args: Any):
    """Runs newest first, filtered by table_name, kind and status; keyset-paginated with before_id."""
    items, next_before = run_service.list_runs(**args)
    return {"items": items, "next_before_id": next_before, "limit": args.get("limit", 50)}


@blp.route("/<id:run_id>")
@blp.response(200, RunSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@blp.alt_response(403, schema=ErrorSchema, description="Admin role required")
@blp.alt_response(404, schema=ErrorSchema, description="No run with this id")
@admin_required
def get_run(run_id: int):
    """One run by id."""
    run = run_service.get_run(run_id)
    if run is None:
        raise NotFound("No run with this id")
    return run
