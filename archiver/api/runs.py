"""/runs: the history of archive, purge and restore runs (admin)."""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from flask_jwt_extended import current_user
from marshmallow import RAISE

from ..errors import ApiError, ErrorSchema
from ..extensions import Blueprint
from ..services import runs as run_service
from .schemas.runs import RunListArgsSchema, RunPageSchema, RunSchema
from .security import admin_required

blp = Blueprint("runs", __name__, url_prefix="/runs",
                description="Run history: every archive, purge and restore run of every table")


def _admin_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Admin by token and still admin in the database."""
    @wraps(fn)
    @admin_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            raise ApiError.forbidden("Admin role required")
        return fn(*args, **kwargs)
    return wrapper


@blp.route("/", strict_slashes=False)
@blp.response(200, RunPageSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Bad filter or page parameter")
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@blp.alt_response(403, schema=ErrorSchema, description="Admin role required")
@_admin_only
@blp.arguments(RunListArgsSchema, location="query", as_kwargs=True, unknown=RAISE)
def list_runs(**args: Any):
    """Runs newest first, filtered by table_name, kind and status; keyset-paginated with before_id."""
    items, next_before = run_service.list_runs(**args)
    return {"items": items, "next_before_id": next_before, "limit": args.get("limit", 50)}


@blp.route("/<int:run_id>")
@blp.response(200, RunSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@blp.alt_response(403, schema=ErrorSchema, description="Admin role required")
@blp.alt_response(404, schema=ErrorSchema, description="No run with this id")
@_admin_only
def get_run(run_id: int):
    """One run by id."""
    run = run_service.get_run(run_id)
    if run is None:
        raise ApiError.not_found("No run with this id")
    return run
