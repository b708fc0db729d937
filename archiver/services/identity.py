"""Who the caller is: token claims and the active-user lookup."""
from __future__ import annotations

from typing import Any

from flask_jwt_extended import create_access_token, create_refresh_token

from ..extensions import db
from ..models import User


def load_active_user(user_id: str) -> User | None:
    """The user behind a token's ``sub``, or None if unknown or deactivated."""
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
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
