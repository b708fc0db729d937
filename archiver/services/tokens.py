"""Tokens: issue, rotate and revoke (login sessions as token families; per-user token versions).

Every token is a JWT with ``sub``, ``type`` (access | refresh), ``jti``, ``exp``, ``iat``, ``ver``
(the user's ``token_version`` when it was issued) and ``fam`` (its login's family id); access
tokens add ``role`` and ``permissions``. A token is accepted only while (checked on every
request, whatever carried the token — header today, a cookie for the console later, see
:func:`archiver.services.identity.load_caller`):

* its user is active and its ``ver`` is the user's current ``token_version`` — a password change
  or reset, a deactivation and a role change bump the version, so every older token dies at once
  (and reactivating a user does not revive them);
* its family exists and is not revoked — logout revokes the family of the token presented, and
  a refresh token used a second time (refresh tokens are rotated on every use) revokes its whole
  family: that is what a stolen token looks like.

Family rows are kept until their last token has expired, then pruned (:func:`prune_expired`).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..errors import Unauthenticated
from ..extensions import db
from ..models import TokenFamily, User
from ..models._types import utcnow
from . import audit
from .audit import Actor
from .source_db import archive_writes_expected, end_read_transaction

log = logging.getLogger(__name__)

_F = TokenFamily.__table__.c
FAMILY_ID_LENGTH = 32  # uuid4().hex
REQUIRED_CLAIMS = ("sub", "type", "jti", "exp", "iat", "ver", "fam")


def _lifetimes() -> tuple[timedelta, timedelta]:
    return current_app.config["JWT_ACCESS_TOKEN_EXPIRES"], current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]


def expires_in() -> int:
    """Access-token lifetime in seconds."""
    return int(_lifetimes()[0].total_seconds())


def claims_problem(claims: dict[str, Any]) -> str | None:
    """Why a token's (signed) claims are not ones this service issues, or None if they are."""
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        return f"missing claim(s): {', '.join(missing)}"
    if claims["type"] not in ("access", "refresh"):
        return "bad claim: type"
    ver = claims["ver"]
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 0:
        return "bad claim: ver"
    fam = claims["fam"]
    if not isinstance(fam, str) or len(fam) != FAMILY_ID_LENGTH:
        return "bad claim: fam"
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        return "bad claim: jti"
    return None


def _claims(user: User, family_id: str) -> dict[str, Any]:
    return {"ver": user.token_version, "fam": family_id}


def _access_claims(user: User, family_id: str) -> dict[str, Any]:
    return {**_claims(user, family_id), "role": user.role, "permissions": list(user.table_names)}


# Flask-JWT-Extended is imported where a token is signed: the headless commands that load this
# module (create-admin, prune-security) sign none and do not set it up (archiver.create_app).
def _access_token(user: User, family_id: str) -> str:
    from flask_jwt_extended import create_access_token
    return create_access_token(identity=str(user.id), additional_claims=_access_claims(user, family_id))


def _refresh_token(user: User, family_id: str, jti: str) -> str:
    from flask_jwt_extended import create_refresh_token
    return create_refresh_token(identity=str(user.id), additional_claims={**_claims(user, family_id), "jti": jti})


def _family_expiry(now: datetime) -> datetime:
    access, refresh = _lifetimes()
    return now + max(access, refresh)


def token_response(access_token: str, refresh_token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in()}
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


def open_family(user: User, address: str | None = None) -> dict[str, Any]:
    """A new login session for ``user``: its family row (added to the session, not committed) and
    its first access and refresh tokens, as the login response body."""
    now = utcnow()
    family_id = uuid.uuid4().hex
    jti = str(uuid.uuid4())
    db.session.add(TokenFamily(id=family_id, user_id=user.id, refresh_jti=jti, created_at=now,
                               expires_at=_family_expiry(now), address=address and address[:64]))
    return token_response(_access_token(user, family_id), _refresh_token(user, family_id, jti))


def access_token_for(user: User) -> str:
    """An access token in a new session of its own (committed): for tools and tests that act as a user.

    Outside a request (no write intent declared): the reads before it end here, and its own
    transaction writes from its start (on SQLite, behind a run's batch rather than failing).
    """
    end_read_transaction()
    with archive_writes_expected():
        body = open_family(user)
        db.session.commit()
    return body["access_token"]


def rotate(user: User, claims: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Exchange a refresh token for a new access token and a new refresh token (the old one dies).

    A refresh token that is not its family's current one has been used before: the family is
    revoked (every token of that login stops working), the event is audited, and the answer is
    a 401. Commits.
    """
    family_id, jti = claims["fam"], claims["jti"]
    now = utcnow()
    new_jti = str(uuid.uuid4())
    moved = db.session.execute(
        sa.update(TokenFamily.__table__)
        .where(_F.id == family_id, _F.user_id == user.id, _F.refresh_jti == jti, _F.revoked_at.is_(None))
        .values(refresh_jti=new_jti, refreshed_at=now, expires_at=_family_expiry(now))).rowcount
    if moved != 1:
        revoked = db.session.execute(
            sa.update(TokenFamily.__table__)
            .where(_F.id == family_id, _F.user_id == user.id, _F.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason="reuse")).rowcount
        if revoked:
            audit.record(audit.TOKEN_REUSE, actor, target=audit.user_target(user.id),
                         details={"family": family_id}, outcome="failure")
            log.warning("refresh token reuse for user %s (family %s) from %s: family revoked", user.id,
                        family_id, actor.address)
        db.session.commit()
        raise Unauthenticated("This refresh token has already been used; the session is revoked, log in again",
                              code="token_reused")
    body = token_response(_access_token(user, family_id), _refresh_token(user, family_id, new_jti))
    db.session.commit()
    return body


def revoke_family(family_id: str, user_id: int, reason: str) -> bool:
    """Revoke one family (not committed); False if it was already revoked or is unknown."""
    return bool(db.session.execute(
        sa.update(TokenFamily.__table__)
        .where(_F.id == family_id, _F.user_id == user_id, _F.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)).rowcount)


def bump_version(user: User) -> None:
    """Invalidate every token issued to ``user`` so far (the caller commits)."""
    user.token_version = (user.token_version or 0) + 1


def prune_expired(now: datetime | None = None) -> int:
    """Delete families whose every token has expired (they can no longer be presented). Commits."""
    deleted = db.session.execute(sa.delete(TokenFamily.__table__).where(_F.expires_at < (now or utcnow()))).rowcount
    db.session.commit()
    return int(deleted or 0)
