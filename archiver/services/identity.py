"""Who the caller is: token claims and the active-user lookup."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_jwt_extended import create_access_token, create_refresh_token

from ..extensions import db
from ..models import MAX_ID, Role, TablePermission, User


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
# One round trip per request: the user's row joined to its grants (one row per grant, or one with
# a NULL table_name). Built once, so SQLAlchemy's statement cache key is computed once too.
_CALLER_QUERY = (sa.select(_U.id, _U.username, _U.role, _U.active, _U.created_at, _U.updated_at, _P.table_name)
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


def load_caller(sub: Any) -> Caller | None:
    """The active user behind a token's ``sub`` with its current grants, in one query; None if
    unknown, deactivated or not an id at all. Read on every request, never cached."""
    uid = _user_id(sub)
    if uid is None:
        return None
    rows = db.session.execute(_CALLER_QUERY, {"uid": uid}).all()
    if not rows or not rows[0].active:
        return None
    r = rows[0]
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


def claims_for(user: User | Caller) -> dict[str, Any]:
    return {"role": user.role, "permissions": list(user.table_names)}


def access_token_for(user: User) -> str:
    return create_access_token(identity=str(user.id), additional_claims=claims_for(user))


def refresh_token_for(user: User) -> str:
    return create_refresh_token(identity=str(user.id))
