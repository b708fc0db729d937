"""Who the caller is: the active-user lookup behind every token, with its revocation checks."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..errors import Unauthenticated
from ..extensions import db
from ..models import MAX_ID, Role, TablePermission, TokenFamily, User
from .tokens import access_token_for  # noqa: F401 - tools and tests mint tokens through identity


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user as stored at the start of this request (read-only, not session-bound).

    Has the attributes of ``User`` that request handling reads: ``is_admin``,
    ``table_names`` (in name order), ``username`` and the fields of ``UserSchema``.
    """

    id: int
    username: str
    role: str
    active: bool
    created_at: datetime
    updated_at: datetime
    table_names: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


_U = User.__table__.c
_P = TablePermission.__table__.c
_F = TokenFamily.__table__.c
# Is the token's login session (family) still open? Evaluated inside the caller query.
_SESSION_OPEN = (sa.exists().where(_F.id == sa.bindparam("fam", type_=sa.String), _F.user_id == _U.id,
                                   _F.revoked_at.is_(None))
                 .label("session_open"))
# One round trip per request: the user's row joined to its grants (one row per grant, or one with
# a NULL table_name), with its token version and whether the token's session is open. Built once,
# so SQLAlchemy's statement cache key is computed once too.
_CALLER_QUERY = (sa.select(_U.id, _U.username, _U.role, _U.active, _U.created_at, _U.updated_at, _U.token_version,
                           _SESSION_OPEN, _P.table_name)
                 .select_from(User.__table__.outerjoin(TablePermission.__table__, _P.user_id == _U.id))
                 .where(_U.id == sa.bindparam("uid"))
                 .order_by(_P.table_name))


def _user_id(sub: Any) -> int | None:
    """A token ``sub`` as a user id, or None if it cannot name a row."""
    if not isinstance(sub, str) or not (0 < len(sub) <= 19 and sub.isascii() and sub.isdigit()):
        return None
    uid = int(sub)
    if uid > MAX_ID:  # 19 digits can still exceed a BIGINT
        return None
    return uid


def load_caller(claims: dict[str, Any]) -> Caller | None:
    """The active user behind a token with its current grants, in one query; read on every request
    (for a token from any location), never cached.

    None if the ``sub`` is unknown, deactivated or not an id at all. ``Unauthenticated``
    (``token_revoked``) if the token was issued before the user's last password change, reset,
    deactivation or role change (its ``ver`` is not the user's ``token_version``), or its login
    session was closed (logout, refresh-token reuse).
    """
    uid = _user_id(claims.get("sub"))
    fam = claims.get("fam")
    if uid is None or not isinstance(fam, str):
        return None
    # A Core query on the session's connection (the transaction session.execute would use, without
    # the ORM's per-statement work): this runs on every authenticated request.
    rows = db.session.connection().execute(_CALLER_QUERY, {"uid": uid, "fam": fam}).all()
    if not rows or not rows[0].active:
        return None
    r = rows[0]
    if r.token_version != claims.get("ver") or not r.session_open:
        raise Unauthenticated("Token has been revoked", code="token_revoked")
    grants = tuple(x.table_name for x in rows if x.table_name is not None)
    return Caller(id=r.id, username=r.username, role=r.role, active=r.active, created_at=r.created_at,
                  updated_at=r.updated_at, table_names=grants)


def load_active_user(user_id: str) -> User | None:
    """The user behind a token's ``sub`` (ORM), or None if unknown, deactivated or not an id at all."""
    uid = _user_id(user_id)
    if uid is None:
        return None
    user = db.session.get(User, uid)
    if user is None or not user.active:
        return None
    return user


__all__ = ["Caller", "access_token_for", "load_active_user", "load_caller"]
