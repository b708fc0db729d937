"""Sign-up, login, token refresh (rotation), logout and password change."""
from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..errors import Forbidden, Unauthenticated
from ..extensions import db
from ..models import Role, User
from . import audit, tokens, users
from .audit import Actor
from .identity import load_active_user
from .passwords import bcrypt_slot, check_password, hash_password

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid username or password"
SIGNUP_ACCEPTED = ("If the username was free, the account now exists (role user, no tables): log in to use it. "
                   "An administrator grants tables.")

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


def _shown(username: Any) -> str:
    """A submitted username as it may be logged and audited: text, at most 128 characters."""
    return (username if isinstance(username, str) else repr(username))[:128]


# --- sign-up -------------------------------------------------------------------

def signup(username: str, password: str, address: str | None = None) -> dict[str, Any]:
    """Self-service registration (only when ``SIGNUP_ENABLED``): role ``user``, no table grants.

    The answer does not say whether the name was free: a taken name gets the same body, after the
    same bcrypt work, so sign-up cannot be used to learn which usernames exist. Bad usernames and
    passwords are still refused with their reason (the rules are public and do not depend on
    other accounts).
    """
    if not current_app.config["SIGNUP_ENABLED"]:
        raise Forbidden("Sign-up is disabled; ask an administrator for an account", code="signup_disabled")
    users.require_valid_username(username)
    password_hash = users.make_password_hash(password, username)  # the rules, then bcrypt (always)
    actor = Actor.anonymous(address)
    created = None
    if not users.username_taken(username):
        user = User(username=username, password_hash=password_hash, role=Role.USER.value, active=True)
        db.session.add(user)
        try:
            db.session.flush()
            audit.record(audit.SIGNUP, actor, target=audit.user_target(user.id), details={"username": username})
            db.session.commit()
            created = user
        except IntegrityError:  # taken meanwhile by a concurrent sign-up
            db.session.rollback()
    if created is None:
        audit.record_now(audit.SIGNUP, actor, details={"username": username, "reason": "username taken"},
                         outcome="failure")
        log.info("sign-up for an existing username %r from %s", username, address)
    return {"username": username, "message": SIGNUP_ACCEPTED}


# --- login -----------------------------------------------------------------------

def authenticate(username: str, password: str) -> User:
    """The active user with these credentials, else one uniform ``Unauthenticated``.

    Unknown user, wrong password and deactivated user are indistinguishable
    (same body, and a bcrypt check is done in every case).
    """
    user, _ = _authenticate(username, password)
    return user


def _authenticate(username: str, password: str) -> tuple[User, None] | tuple[None, str]:
    # A name that breaks the username rules cannot exist; do not send it to the database.
    user = users.find_by_username(username) if users.username_problem(username) is None else None
    stored = user.password_hash if user is not None else None  # read before the slot ends the transaction
    with bcrypt_slot():
        if stored is None:
            check_password(password, _dummy_hash())
            return None, "unknown user"
        correct = check_password(password, stored)
    if not correct:
        return None, "wrong password"
    if not user.active:
        return None, "user deactivated"
    return user, None


def login(username: str, password: str, address: str | None = None) -> dict[str, Any]:
    """Check credentials and open a login session: an access token and a refresh token.

    Success and failure are both audited (with the address); a failure is also logged.
    """
    user, reason = _authenticate(username, password)
    if user is None:
        audit.record_now(audit.LOGIN, Actor.anonymous(address), outcome="failure",
                         details={"username": _shown(username), "reason": reason})
        log.warning("failed login for username %r from %s (%s)", _shown(username), address, reason)
        raise _bad_credentials()
    body = tokens.open_family(user, address)
    audit.record(audit.LOGIN, Actor(user.id, user.username, address), target=audit.user_target(user.id))
    db.session.commit()
    return body


# --- tokens ----------------------------------------------------------------------

def refresh(claims: dict[str, Any], address: str | None = None) -> dict[str, Any]:
    """A new access token and a new refresh token for a refresh token (which dies: rotation).

    Role and grants are re-read from the database. A refresh token used twice revokes its
    whole session (see :func:`archiver.services.tokens.rotate`).
    """
    user = load_active_user(claims.get("sub"))
    if user is None:
        raise Unauthenticated("User is unknown or deactivated", code="user_inactive")
    return tokens.rotate(user, claims, Actor(user.id, user.username, address))


def logout(claims: dict[str, Any], actor: Actor) -> None:
    """End the login session of the presented token: its refresh token and every access token
    refreshed from it stop working. Audited; commits."""
    user_id = int(claims["sub"])
    tokens.revoke_family(claims["fam"], user_id, "logout")
    audit.record(audit.LOGOUT, actor, target=audit.user_target(user_id),
                 details={"token_type": claims.get("type")})
    db.session.commit()


def change_password(user_id: int, old_password: str, new_password: str, actor: Actor) -> dict[str, Any]:
    """Change the caller's own password; every existing session ends and a new one is returned."""
    user = users.change_password(user_id, old_password, new_password, actor)
    body = tokens.open_family(user, actor.address)
    db.session.commit()
    return body
