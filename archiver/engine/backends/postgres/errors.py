"""PostgreSQL SQLSTATEs in plain words (never the message text, which may quote values)."""
from __future__ import annotations

import sqlalchemy as sa

_CODES = {
    "42P01": "table does not exist",
    "42703": "column does not exist",
    "42501": "permission denied",
    "40P01": "deadlock detected",
    "40001": "serialization failure",
    "55P03": "lock not available",
    "57014": "statement cancelled (timeout)",
    "53100": "disk full",
    "23505": "unique violation",
    "23503": "foreign key violation",
}
_CLASSES = {"08": "connection failure", "57": "server shutting down or unavailable", "53": "insufficient resources"}
#: Lock conflicts the server resolved by rolling back (a deadlock) or by giving up on a wait.
_LOCK_CONFLICTS = {"40P01", "55P03"}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 error (wrapped by SQLAlchemy or not), else None."""
    code = getattr(getattr(exc, "orig", exc), "pgcode", None)
    return code if isinstance(code, str) and code else None


def reason(exc: BaseException) -> str | None:
    """A safe description of a psycopg2 error (plain words and SQLSTATE), or None when it has none."""
    code = sqlstate(exc)
    if code is None:
        return None
    orig = getattr(exc, "orig", exc)
    kind = type(exc).__name__ if isinstance(exc, sa.exc.DBAPIError) else type(orig).__name__
    return f"{_CODES.get(code) or _CLASSES.get(code[:2]) or kind} (SQLSTATE {code})"


def is_lock_conflict(exc: BaseException) -> bool:
    return sqlstate(exc) in _LOCK_CONFLICTS
