"""Engine failures with messages that are safe to store in a run record.

Every message here names tables, columns and error classes only: never SQL
text, bound values or connection strings. :func:`describe_error` turns any
exception into such a message.
"""
from __future__ import annotations

import sqlalchemy as sa

from .criteria import CriteriaError


class EngineError(Exception):
    """An archival failure whose ``str()`` is short and safe to show."""


class TableNotFound(EngineError):
    def __init__(self, table_name: str) -> None:
        super().__init__(f"source table '{table_name}' does not exist")


class ColumnNotFound(EngineError):
    def __init__(self, table_name: str, column: str) -> None:
        super().__init__(f"column '{column}' does not exist in source table '{table_name}'")


class NoPrimaryKey(EngineError):
    def __init__(self, table_name: str) -> None:
        super().__init__(f"source table '{table_name}' has no primary key; it cannot be archived safely")


class UnsupportedDateColumn(EngineError):
    def __init__(self, table_name: str, column: str, type_name: str) -> None:
        super().__init__(f"date column '{column}' of '{table_name}' has type {type_name}; "
                         "expected a DATE or TIMESTAMP column (or TEXT dates on SQLite)")


class LeaseLost(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"lease on '{name}' was lost to another runner; stopped after the last committed batch")


class DatabaseError(EngineError):
    """A DB-API failure on one side, described by class and error code only."""

    def __init__(self, side: str, reason: str) -> None:
        super().__init__(f"{side} database error: {reason}")
        self.side = side


# PostgreSQL SQLSTATE classes/codes with a plain-words reason.
_PG_CODES = {
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
_PG_CLASSES = {"08": "connection failure", "57": "server shutting down or unavailable", "53": "insufficient resources"}
# MySQL/MariaDB error numbers.
_MYSQL_CODES = {
    1146: "table does not exist", 1054: "column does not exist", 1205: "lock wait timeout",
    1213: "deadlock detected", 1142: "permission denied", 1045: "access denied",
    2003: "cannot connect", 2006: "server has gone away", 2013: "lost connection", 1451: "foreign key violation",
    1452: "foreign key violation", 1062: "unique violation",
}
_SQLITE_NAMES = {
    "SQLITE_BUSY": "database is locked", "SQLITE_LOCKED": "table is locked", "SQLITE_READONLY": "read-only database",
    "SQLITE_CANTOPEN": "cannot open the database file", "SQLITE_FULL": "disk full", "SQLITE_CORRUPT": "corrupt database",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign key violation", "SQLITE_CONSTRAINT_UNIQUE": "unique violation",
}


def dbapi_reason(exc: BaseException) -> str:
    """A safe description of a DB-API error: its kind and code, no message text."""
    orig = getattr(exc, "orig", exc)
    kind = type(exc).__name__ if isinstance(exc, sa.exc.DBAPIError) else type(orig).__name__
    pgcode = getattr(orig, "pgcode", None)
    if isinstance(pgcode, str) and pgcode:
        reason = _PG_CODES.get(pgcode) or _PG_CLASSES.get(pgcode[:2]) or kind
        return f"{reason} (SQLSTATE {pgcode})"
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str) and name:
        text = str(orig)
        # SQLite's own messages for missing objects carry only the object's name.
        if text.startswith(("no such table:", "no such column:")):
            return text[:200]
        return f"{_SQLITE_NAMES.get(name, kind)} ({name})"
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and type(orig).__module__.startswith("pymysql"):
        return f"{_MYSQL_CODES.get(args[0], kind)} (error {args[0]})"
    if isinstance(exc, sa.exc.DBAPIError) and (exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError)):
        return f"unavailable or operation failed ({kind})"
    return kind


#: Lock conflicts the database resolved by rolling back (a deadlock) or by giving up on a wait.
_LOCK_CONFLICTS_MYSQL = {1213, 1205}
_LOCK_CONFLICTS_PG = {"40P01", "55P03"}


def is_lock_conflict(exc: BaseException) -> bool:
    """True for a deadlock or a lock-wait timeout (the statement, maybe its transaction, was undone)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "pgcode", None) in _LOCK_CONFLICTS_PG:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and type(orig).__module__.startswith("pymysql") \
        and args[0] in _LOCK_CONFLICTS_MYSQL


def describe_error(exc: BaseException, side: str | None = None) -> str:
    """Short, safe text for a run record (no SQL, values or connection strings)."""
    if isinstance(exc, EngineError):
        return str(exc)[:500]
    if isinstance(exc, sa.exc.DBAPIError):
        prefix = f"{side} database error" if side else "database error"
        return f"{prefix}: {dbapi_reason(exc)}"
    if isinstance(exc, sa.exc.NoSuchTableError):
        return f"source table '{exc.args[0] if exc.args else '?'}' does not exist"
    # CriteriaError messages are safe by contract (see engine/criteria.py).
    if isinstance(exc, CriteriaError):
        return f"invalid custom_criteria: {str(exc)[:300]}"
    return f"internal error ({type(exc).__name__})"
