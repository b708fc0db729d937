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
    "57014": "statement cancelled",
    "53100": "disk full",
    "23505": "unique violation",
    "23503": "foreign key violation",
}
_CLASSES = {"08": "connection failure", "57": "server shutting down or unavailable", "53": "insufficient resources"}
#: Lock conflicts the server resolved by rolling back (a deadlock) or by giving up on a wait.
_LOCK_CONFLICTS = {"40P01", "55P03"}
#: A cancelled statement: by ``statement_timeout`` (a conflict: the batch is retried smaller) or by a
#: cancel request (``pg_cancel_backend``, a user: not one).
_CANCELLED = "57014"


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
    words = "statement timeout" if is_statement_timeout(exc) else _CODES.get(code) or _CLASSES.get(code[:2]) or kind
    return f"{words} (SQLSTATE {code})"


def is_statement_timeout(exc: BaseException) -> bool:
    """57014 raised by ``statement_timeout`` (not by a cancel request, which shares the SQLSTATE).

    Only the server's primary message tells them apart; it is read to classify, never shown. A
    server whose ``lc_messages`` is not English says it in other words: a plain cancel, as before.
    """
    if sqlstate(exc) != _CANCELLED:
        return False
    diag = getattr(getattr(exc, "orig", exc), "diag", None)
    message = getattr(diag, "message_primary", None)
    return isinstance(message, str) and "statement timeout" in message


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock, a lock wait given up, or a statement timeout: the batch is worth retrying smaller."""
    return sqlstate(exc) in _LOCK_CONFLICTS or is_statement_timeout(exc)
