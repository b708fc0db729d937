"""/auth: sign-up, login, token refresh (rotation), logout, password change and the caller's identity."""
from __future__ import annotations

from flask_jwt_extended import current_user, get_jwt, jwt_required

from ..services import auth as auth_service
from . import ratelimit
from .openapi import Blueprint, ErrorSchema
from .schemas.auth import (LoginSchema, PasswordChangeSchema, SignupAcceptedSchema, SignupSchema,
                           TokenPairSchema)
from .schemas.users import UserSchema
from .security import current_actor, login_required

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Sign-up, login and tokens")

_RATE_LIMITED = "Too many attempts (per username or per client address): wait `Retry-After` seconds"


@blp.route("/signup", methods=["POST"])
@blp.doc(security=[])
@blp.arguments(SignupSchema)
@blp.response(202, SignupAcceptedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Bad username/password, or a field other than those two")
@blp.alt_response(403, schema=ErrorSchema, description="Sign-up is disabled (`SIGNUP_ENABLED`)")
@blp.alt_response(429, schema=ErrorSchema, description=_RATE_LIMITED)
@ratelimit.signup_per_address
@ratelimit.signup_per_username
def signup(data):
    """Create an account with role `user` and no table permissions (when sign-up is enabled).

    Only `username` and `password` are accepted; any other field (such as
    `role` or `permissions`) is rejected with 400. The answer is the same
    whether or not the username was free (no way to learn which accounts
    exist): log in to find out whether the account is yours.
    """
    return auth_service.signup(data["username"], data["password"], ratelimit.client_address()), 202


@blp.route("/login", methods=["POST"])
@blp.doc(security=[])
@blp.arguments(LoginSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Malformed body")
@blp.alt_response(401, schema=ErrorSchema, description="Invalid username or password (same answer for both)")
@blp.alt_response(429, schema=ErrorSchema, description=_RATE_LIMITED + "; or too many password checks at once")
@ratelimit.login_per_username
@ratelimit.login_per_address
def login(data):
    """Exchange credentials for an access token (Bearer) and a refresh token (a new login session)."""
    return auth_service.login(data["username"], data["password"], ratelimit.client_address())


@blp.route("/refresh", methods=["POST"])
@blp.doc(description="Send the **refresh** token as `Authorization: Bearer <refresh_token>`. The answer "
                     "carries a new refresh token: the one sent stops working (rotation), and sending it "
                     "again ends the whole login session.")
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid, expired, revoked or already used refresh "
                                                        "token (or an access token); or the user is deactivated")
@jwt_required(refresh=True)
def refresh():
    """New access and refresh tokens, with role and permissions re-read from the database."""
    return auth_service.refresh(get_jwt(), ratelimit.client_address())


@blp.route("/logout", methods=["POST"])
@blp.doc(description="Send the refresh token (or an access token) of the session to end.")
@blp.response(204, description="The session is revoked: its refresh token and its access tokens stop working")
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid, expired or revoked token")
@jwt_required(verify_type=False)
def logout():
    """End this login session: the presented refresh token and every access token issued with it."""
    auth_service.logout(get_jwt(), current_actor())
    return None


@blp.route("/password", methods=["POST"])
@blp.response(200, TokenPairSchema, description="Password changed; every other session is ended and a new "
                                                "one is returned")
@blp.alt_response(400, schema=ErrorSchema, description="Wrong current password, or the new one breaks a rule")
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@blp.alt_response(429, schema=ErrorSchema, description="Too many attempts: wait `Retry-After` seconds")
@login_required
@blp.arguments(PasswordChangeSchema)
@ratelimit.password_change_per_user
def change_password(data):
    """Change your own password (the current one is required).

    Every token issued before (on any device) stops working; the answer is a
    new access and refresh token pair.
    """
    return auth_service.change_password(current_user.id, data["old_password"], data["new_password"],
                                        current_actor())


@blp.route("/me", methods=["GET"])
@blp.response(200, UserSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Missing, invalid or expired access token")
@login_required
def me():
    """The caller's account as stored now (role and permissions may be newer than the token's)."""
    return current_user
