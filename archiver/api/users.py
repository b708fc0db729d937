"""/users: user administration (admin only)."""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from flask.views import MethodView
from flask_jwt_extended import current_user

from ..errors import ApiError, ErrorSchema
from ..extensions import Blueprint
from ..services import users as user_service
from .schemas.users import (PermissionsSchema, UserCreateSchema, UserListQuerySchema, UserPageSchema,
                            UserPatchSchema, UserSchema)
from .security import admin_required, caller_id

blp = Blueprint("users", __name__, url_prefix="/users", description="User administration (admin only)")


def admin_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``admin_required`` plus: the caller is still an admin in the database (a demoted admin's
    unexpired token cannot administer users)."""

    @wraps(fn)
    @admin_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            raise ApiError.forbidden("Admin role required")
        return fn(*args, **kwargs)

    return wrapper


def _errors(*statuses: int):
    descriptions = {
        400: "Invalid input",
        401: "Missing, invalid or expired access token",
        403: "Caller is not an admin",
        404: "No such user",
        409: "Conflict",
    }

    def decorate(fn):
        for status in statuses:
            fn = blp.alt_response(status, schema=ErrorSchema, description=descriptions[status])(fn)
        return fn

    return decorate


@blp.route("/", strict_slashes=False)
class Users(MethodView):
    @blp.response(200, UserPageSchema)
    @_errors(400, 401, 403)
    @admin_only
    @blp.arguments(UserListQuerySchema, location="query")
    def get(self, query):
        """List users, ordered by id, `page`/`per_page` paginated (per_page ≤ 200), filter by `role`/`active`."""
        return user_service.list_users(**query)

    @blp.response(201, UserSchema)
    @_errors(400, 401, 403, 409)
    @admin_only
    @blp.arguments(UserCreateSchema)
    def post(self, data):
        """Create a user with a role and table permissions."""
        return user_service.create_user(data["username"], data["password"], data["role"], data["permissions"])


@blp.route("/<int:user_id>")
class UserById(MethodView):
    @blp.response(200, UserSchema)
    @_errors(401, 403, 404)
    @admin_only
    def get(self, user_id: int):
        """One user."""
        return user_service.get_user(user_id)

    @blp.response(200, UserSchema)
    @_errors(400, 401, 403, 404, 409)
    @admin_only
    @blp.arguments(UserPatchSchema)
    def patch(self, data, user_id: int):
        """Change role and/or active flag. An admin cannot demote or deactivate themself (409)."""
        return user_service.update_user(caller_id(), user_id, role=data.get("role"), active=data.get("active"))

    @blp.response(200, UserSchema)
    @_errors(401, 403, 404, 409)
    @admin_only
    def delete(self, user_id: int):
        """Deactivate a user: no login or refresh, existing tokens rejected. Idempotent; not yourself (409)."""
        return user_service.deactivate_user(caller_id(), user_id)


@blp.route("/<int:user_id>/permissions", methods=["PUT"])
@blp.response(200, UserSchema)
@_errors(400, 401, 403, 404)
@admin_only
@blp.arguments(PermissionsSchema)
def put_permissions(data, user_id: int):
    """Replace the user's table permissions (identifiers ≤ 255 characters; duplicates collapse)."""
    return user_service.set_permissions(user_id, data["permissions"])
