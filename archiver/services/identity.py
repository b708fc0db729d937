"""Who the caller is: token claims and the active-user lookup."""
from __future__ import annotations

from typing import Any

from flask_jwt_extended import create_access_token, create_refresh_token

from ..extensions import db
from ..models import MAX_ID, User


def load_active_user(user_id: str) -> User | None:
    """The user behind a token's ``sub``, or None if unknown, deactivated or not an id at all."""
    if not isinstance(user_id, str) or not (0 < len(user_id) <= 19 and user_id.isascii() and user_id.isdigit()):
        return None
    uid = int(user_id)
    if uid > MAX_ID:  # 19 digits can still exceed a BIGINT
        return None
    user = db.session.get(User, uid)
    if user is None or not user.active:
        return None
    return user


def claims_for(user: User) -> dict[str, Any]:
    return {"role": user.role, "permissions": user.table_names}


def access_token_for(user: User) -> str:
    return create_access_token(identity=str(user.id), additional_claims=claims_for(user))


def refresh_token_for(user: User) -> str:
    return create_refresh_token(identity=str(user.id))
