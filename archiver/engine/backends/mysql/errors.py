"""MySQL/MariaDB error numbers in plain words (never the message text, which may quote values)."""
from __future__ import annotations

import sqlalchemy as sa

_CODES = {
    1146: "table does not exist", 1054: "column does not exist", 1205: "lock wait timeout",
    1213: "deadlock detected", 1142: "permission denied", 1045: "access denied",
    2003: "cannot connect", 2006: "server has gone away", 2013: "lost connection", 1451: "foreign key violation",
    1452: "foreign key violation", 1062: "unique violation", 1969: "statement timeout", 3024: "statement timeout",
    1317: "statement interrupted",
}
#: Lock conflicts the server resolved by rolling back (a deadlock) or by giving up on a wait, and
#: statement timeouts (MariaDB ``max_statement_time``: 1969, MySQL ``max_execution_time``: 3024);
#: not a statement killed by ``KILL QUERY`` (1317).
_LOCK_CONFLICTS = {1213, 1205, 1969, 3024}


def error_number(exc: BaseException) -> int | None:
    """The server's error number of a PyMySQL error (wrapped by SQLAlchemy or not), else None."""
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and type(orig).__module__.startswith("pymysql"):
        return args[0]
    return None


def reason(exc: BaseException) -> str | None:
    """A safe description of a PyMySQL error (plain words and error number), or None."""
    number = error_number(exc)
    if number is None:
        return None
    orig = getattr(exc, "orig", exc)
    kind = type(exc).__name__ if isinstance(exc, sa.exc.DBAPIError) else type(orig).__name__
    return f"{_CODES.get(number, kind)} (error {number})"


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock, a lock wait given up, or a statement timeout: the batch is worth retrying smaller."""
    return error_number(exc) in _LOCK_CONFLICTS
