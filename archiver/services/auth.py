"""Sign-up, login and token refresh."""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import current_app

from ..errors import Unauthenticated
from ..models import Role, User
from . import users
from .identity import access_token_for, load_active_user, refresh_token_for
from .passwords import check_password, hash_password

INVALID_CREDENTIALS = "Invalid username or password"

# A bcrypt hash per cost factor, checked against when the username is unknown
# so that a login for a missing user costs as much as one for a real user.
_dummy_hashes: dict[int, str] = {}


def _dummy_hash() -> str:
    rounds = current_app.config["BCRYPT_ROUNDS"]
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = hash_password(secrets.token_urlsafe(24), rounds)
    return _dummy_hashes[rounds]


def _bad_credentials() -> Unauthenticated:
    return Unauthenticated(INVALID_CREDENTIALS, code="invalid_credentials")


def signup(username: str, password: str) -> User:
    """Self-service registration: always role ``user`` with no table grants."""
    return users.create_user(username, password, role=Role.USER.value, permissions=())


def authenticate(username: str, password: str) -> User:
    """The active user with these credentials, else one uniform ``Unauthenticated``.

    Unknown user, wrong password and deactivated user are indistinguishable
    (same body, and a bcrypt check is done in every case).
    """
    # A name that breaks the username rules cannot exist; do not send it to the database.
    user = users.find_by_username(username) if users.username_problem(username) is None else None
    if user is None:
        check_password(password, _dummy_hash())
        raise _bad_credentials()
    if not check_password(password, user.password_hash) or not user.active:
        raise _bad_credentials()
    return user


def _expires_in() -> int | None:
    expires = current_app.config.get("JWT_ACCESS_TOKEN_EXPIRES")
    return int(expires.total_seconds()) if isinstance(expires, timedelta) else None


def access_token_response(user: User) -> dict[str, Any]:
    """A fresh access token whose role and permissions are the user's current ones."""
    return {"access_token": access_token_for(user), "token_type": "bearer", "expires_in": _expires_in()}


def login(username: str, password: str) -> dict[str, Any]:
    """Check credentials and issue an access token and a refresh token."""
    user = authenticate(username, password)
    return {**access_token_response(user), "refresh_token": refresh_token_for(user)}


def refresh(user_id: str) -> dict[str, Any]:
    """A new access token for the refresh token's subject, role and grants re-read from the DB."""
    user = load_active_user(user_id)
    if user is None:
        raise Unauthenticated("User is unknown or deactivated", code="user_inactive")
    return access_token_response(user)
