"""/config: archive policies, one per source table (admin; a permitted user may read one)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

from flask.views import MethodView

from ..services import policies as policy_service
from .openapi import Blueprint, ErrorSchema
from .schemas.policies import (PolicyInSchema, PolicyListSchema, PolicyPatchSchema, PolicyPreviewSchema,
                               PolicySchema)
from .docs import error_responses
from .security import admin_required, current_actor, is_admin, login_required, require_table_access

blp = Blueprint("config", __name__, url_prefix="/config",
                description="Archive policies: which rows of a source table are archived, and for how long")

#: What a permitted (non-admin) user sees of a policy: all but ``updated_by``.
_USER_VISIBLE = tuple(name for name in PolicySchema().fields if name != "updated_by")

_ERRORS = {
    400: "Invalid policy; `details` names each bad field",
    401: "Missing, invalid or expired access token",
    403: "Caller may not do this (admin only, or no permission for the table)",
    404: "No policy for this table",
    413: "Request body larger than 1 MiB",
    415: "Body is not JSON",
}


def _errors(*statuses: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return error_responses(blp, statuses, _ERRORS)


@blp.route("/", strict_slashes=False)
class Policies(MethodView):
    @blp.response(200, PolicyListSchema)
    @_errors(401, 403)
    @admin_required
    def get(self):
        """List every policy, ordered by table name: `{"items": [...]}` like the other listings."""
        return {"items": policy_service.list_policies()}

    @blp.response(201, PolicySchema, description="Policy created")
    @blp.alt_response(200, schema=PolicySchema, description="Existing policy replaced")
    @_errors(400, 401, 403, 413, 415)
    @admin_required
    @blp.arguments(PolicyInSchema)
    def post(self, data: dict[str, Any]):
        """Create or replace the policy of `table_name` (201 created, 200 updated).

        The body is the whole policy: omitted optional fields take their defaults.
        It is validated against the source database: the table must exist and
        have a primary key, `date_column` must be a date/time column, and
        `custom_criteria` must compile for the table. Unknown fields are a 400.
        """
        policy, created = policy_service.create_or_update(data, actor=current_actor())
        return policy, (201 if created else 200)


@blp.route("/<string:table_name>")
class PolicyByTable(MethodView):
    @blp.response(200, PolicySchema)
    @_errors(401, 403, 404)
    @login_required
    def get(self, table_name: str):
        """One table's policy: admins, and users holding that table's permission.

        `updated_by` (who changed it last) is shown to admins only.
        """
        require_table_access(table_name)
        policy = policy_service.require_policy(table_name)
        if is_admin():
            return policy
        # the same policy without who changed it last (the schema leaves out what is missing)
        return SimpleNamespace(**{name: getattr(policy, name) for name in _USER_VISIBLE})

    @blp.response(200, PolicySchema)
    @_errors(400, 401, 403, 404, 413, 415)
    @admin_required
    @blp.arguments(PolicyPatchSchema)
    def patch(self, data: dict[str, Any], table_name: str):
        """Change some fields of a policy; the fields not sent keep their stored values.

        The result is validated against the source like a whole policy (`POST /config`);
        a refused change leaves the stored policy as it was.
        """
        return policy_service.update_policy(table_name, data, actor=current_actor())

    @blp.response(204, description="Policy removed (archived rows are kept)")
    @_errors(401, 403, 404)
    @admin_required
    def delete(self, table_name: str):
        """Remove a table's policy: its rows are no longer archived or purged."""
        policy_service.delete_policy(table_name, actor=current_actor())
        return None


# Further /config routes are appended below.


# --- preview ----------------------------------------------------------------------
from .schemas.runs import PreviewSchema  # noqa: E402


@blp.route("/<string:table_name>/preview", methods=["POST"])
@blp.arguments(PolicyPreviewSchema, required=False)
@blp.response(200, PreviewSchema)
@blp.alt_response(400, schema=ErrorSchema, description="The (previewed) policy does not fit the source table")
@_errors(401, 403, 404, 413, 415)
@blp.alt_response(503, schema=ErrorSchema, description="Source database error")
@admin_required
def preview_policy(data: dict[str, Any] | None, table_name: str):
    """Count the rows an archive run would move now, with the cutoff and a few sample rows (moves nothing).

    Without a body: the stored policy (404 if there is none). With policy fields in the body:
    the stored policy with those fields changed, or, for a table without a policy, the policy
    they describe (`archive_after_days` required) — a live preview before saving. `sample_rows`
    (0-50, default 5) qualifying rows are returned as they would be archived.
    """
    data = dict(data or {})
    sample_rows = data.pop("sample_rows", policy_service.DEFAULT_SAMPLE_ROWS)
    return policy_service.preview_policy(table_name, data, sample_rows=sample_rows)
