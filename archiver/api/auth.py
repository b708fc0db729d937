"""/auth: sign-up, login, token refresh and the caller's identity."""
from __future__ import annotations

from flask_jwt_extended import current_user, get_jwt_identity, jwt_required

from ..services import auth as auth_service
from .openapi import Blueprint, ErrorSchema
from .schemas.auth import AccessTokenSchema, LoginSchema, SignupSchema, TokenPairSchema
from .schemas.users import UserSchema
from .security import login_required

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Sign-up, login and tokens")


@blp.route("/signup", methods=["POST"])
@blp.doc(security=[])
@blp.arguments(SignupSchema)
@blp.response(201, UserSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Bad username/password, or a field other than those two")
@blp.alt_response(409, schema=ErrorSchema, description="Username already taken")
def signup(data):
    """Create an account with role `user` and no table permissions.

    Only `username` and `password` are accepted; any other field (such as
    `role` or `permissions`) is rejected with 400.
    """
    return auth_service.signup(data["username"], data["password"])


@blp.route("/login", methods=["POST"])
@blp.doc(security=[])
@blp.arguments(LoginSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Malformed body")
@blp.alt_response(401, schema=ErrorSchema, description="Invalid username or password (same answer for both)")
def login(data):
    """Exchange credentials for an access token (Bearer) and a refresh token."""
    return auth_service.login(data["username"], data["password"])


@blp.route("/refresh", methods=["POST"])
@blp.doc(description="Send the **refresh** token as `Authorization: Bearer <refresh_token>`.")
@blp.response(200, AccessTokenSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid, expired or access (not refresh) token; "
                                                        "or the user is deactivated")
@jwt_required(refresh=True)
def refresh():
    """Issue a new access token, with role and permissions re-read from the database."""
    return auth_service.refresh(get_jwt_identity())


@blp.route("/me", methods=["GET"])
@blp.response(200, UserSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@login_required
def me():
    """The caller's account as stored now (role and permissions may be newer than the token's)."""
    return current_user
