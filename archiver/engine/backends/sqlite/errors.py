"""SQLite error names in plain words (never the message text, which may quote values)."""
from __future__ import annotations

import sqlalchemy as sa

_NAMES = {
    "SQLITE_BUSY": "database is locked", "SQLITE_LOCKED": "table is locked", "SQLITE_READONLY": "read-only database",
    "SQLITE_CANTOPEN": "cannot open the database file", "SQLITE_FULL": "disk full", "SQLITE_CORRUPT": "corrupt database",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign key violation", "SQLITE_CONSTRAINT_UNIQUE": "unique violation",
}


def reason(exc: BaseException) -> str | None:
    """A safe description of a sqlite3 error (its error name), or None when it is not one."""
    orig = getattr(exc, "orig", exc)
    name = getattr(orig, "sqlite_errorname", None)
    if not isinstance(name, str) or not name:
        return None
    text = str(orig)
    # SQLite's own messages for missing objects carry only the object's name.
    if text.startswith(("no such table:", "no such column:")):
        return text[:200]
    kind = type(exc).__name__ if isinstance(exc, sa.exc.DBAPIError) else type(orig).__name__
    return f"{_NAMES.get(name, kind)} ({name})"
