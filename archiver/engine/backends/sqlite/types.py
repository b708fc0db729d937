"""SQLite's date/time columns hold text in any format: read them without failing.

SQLAlchemy's SQLite DATETIME/DATE/TIME types raise on text they cannot parse;
these read such text verbatim (it goes into the payload as it is stored).
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa


class LenientText(sa.types.TypeDecorator):
    """Read a SQLite date/time column without failing on text SQLAlchemy cannot parse."""

    impl = sa.String
    cache_ok = True
    _parse: Any = None

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, str):
            try:
                return type(self)._parse(value)
            except ValueError:
                return value  # kept verbatim in the payload
        return value


class LenientSQLiteDateTime(LenientText):
    cache_ok = True
    _parse = staticmethod(datetime.fromisoformat)


class LenientSQLiteDate(LenientText):
    cache_ok = True
    _parse = staticmethod(date.fromisoformat)


class LenientSQLiteTime(LenientText):
    cache_ok = True
    _parse = staticmethod(time.fromisoformat)


def lenient_sqlite_type(col_type: sa.types.TypeEngine) -> sa.types.TypeEngine | None:
    """A lenient replacement for a SQLite DATETIME/DATE/TIME column type, else None."""
    if isinstance(col_type, sa.DateTime):
        return LenientSQLiteDateTime()
    if isinstance(col_type, sa.Date):
        return LenientSQLiteDate()
    if isinstance(col_type, sa.Time):
        return LenientSQLiteTime()
    return None
