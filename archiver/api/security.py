"""Authorization helpers for route handlers (JWT claims → role and table grants)."""
from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar

from flask_jwt_extended import get_current_user, get_jwt, get_jwt_identity, jwt_required

from ..errors import Forbidden
from ..services.audit import Actor
from .ratelimit import client_address

F = TypeVar("F", bound=Callable[..., Any])


def claims() -> dict[str, Any]:
    return get_jwt()


def caller_id() -> int:
    return int(get_jwt_identity())


def current_actor() -> Actor:
    """The authenticated caller and the client address, for the audit trail."""
    user = get_current_user()
    return Actor(user.id, user.username, client_address())


def anonymous_actor() -> Actor:
    return Actor.anonymous(client_address())


def is_admin() -> bool:
    """Admin by the token's role and still admin in the database (a demotion bites at once)."""
    if claims().get("role") != "admin":
        return False
    user = get_current_user()
    return user is not None and user.is_admin


def permitted_tables() -> set[str]:
    """Tables granted in the token and still granted in the database (a revocation bites at once)."""
    perms = claims().get("permissions") or []
    user = get_current_user()
    if user is None:
        return set()
    return {p for p in perms if isinstance(p, str)} & set(user.table_names)


def can_read_table(table_name: str) -> bool:
    return is_admin() or table_name in permitted_tables()


def require_table_access(table_name: str) -> None:
    """403 unless the caller is admin or holds ``table_name``'s permission."""
    if not can_read_table(table_name):
        raise Forbidden("You do not have access to this table")


def admin_required(fn: F) -> F:
    """A valid access token whose role is admin; 401 without, 403 otherwise."""

    @wraps(fn)
    @jwt_required()
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_admin():
            raise Forbidden("Admin role required")
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def login_required(fn: F) -> F:
    """A valid access token (any role)."""
    return jwt_required()(fn)  # type: ignore[return-value]


BEARER = [{"bearerAuth": []}]
