"""/users: user administration (admin only)."""
from __future__ import annotations


from flask.views import MethodView

from ..services import users as user_service
from .openapi import Blueprint
from .schemas.users import (PermissionsSchema, UserCreateSchema, UserListQuerySchema, UserPageSchema,
                            UserPatchSchema, UserSchema)
from .docs import error_responses
from .security import admin_required, current_actor

blp = Blueprint("users", __name__, url_prefix="/users", description="User administration (admin only)")


def _errors(*statuses: int):
    return error_responses(blp, statuses, {403: "Caller is not an admin", 404: "No such user"})


@blp.route("/", strict_slashes=False)
class Users(MethodView):
    @blp.response(200, UserPageSchema)
    @_errors(400, 401, 403)
    @admin_required
    @blp.arguments(UserListQuerySchema, location="query")
    def get(self, query):
        """List users, ordered by id, `page`/`per_page` paginated (per_page ≤ 200), filter by `role`/`active`."""
        return user_service.list_users(**query)

    @blp.response(201, UserSchema)
    @_errors(400, 401, 403, 409)
    @admin_required
    @blp.arguments(UserCreateSchema)
    def post(self, data):
        """Create a user with a role and table permissions."""
        return user_service.create_user(data["username"], data["password"], data["role"], data["permissions"],
                                        actor=current_actor())


@blp.route("/<id:user_id>")
class UserById(MethodView):
    @blp.response(200, UserSchema)
    @_errors(401, 403, 404)
    @admin_required
    def get(self, user_id: int):
        """One user."""
        return user_service.get_user(user_id)

    @blp.response(200, UserSchema)
    @_errors(400, 401, 403, 404, 409)
    @admin_required
    @blp.arguments(UserPatchSchema)
    def patch(self, data, user_id: int):
        """Change role and/or active flag. An admin cannot demote or deactivate themself (409).

        A role change or a deactivation ends every session of the user: tokens issued before
        are refused, also after a reactivation.
        """
        return user_service.update_user(current_actor(), user_id, role=data.get("role"), active=data.get("active"))

    @blp.response(200, UserSchema)
    @_errors(401, 403, 404, 409)
    @admin_required
    def delete(self, user_id: int):
        """Deactivate a user: no login or refresh, existing tokens rejected. Idempotent; not yourself (409)."""
        return user_service.deactivate_user(current_actor(), user_id)


@blp.route("/<id:user_id>/permissions", methods=["PUT"])
@blp.response(200, UserSchema)
@_errors(400, 401, 403, 404)
@admin_required
@blp.arguments(PermissionsSchema)
def put_permissions(data, user_id: int):
    """Replace the user's table permissions (identifiers ≤ 255 characters; duplicates collapse)."""
    return user_service.set_permissions(user_id, data["permissions"], actor=current_actor())
