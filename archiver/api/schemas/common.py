"""Fields shared by the schemas: one timestamp format everywhere.

Every timestamp the API returns is ISO 8601 in UTC with its offset, ``2024-01-31T12:00:00+00:00``
(a naive value read from SQLite, which keeps no zone, is UTC); every timestamp it accepts is ISO 8601,
naive meaning UTC.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from marshmallow import fields

# A "+" in a query string arrives as a space: "2024-01-01T10:00:00 02:00".
_SPACE_OFFSET = re.compile(r"^(.+[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


class UtcDateTime(fields.DateTime):
    """ISO 8601 date or date-time; naive values are taken as UTC; loads an aware UTC datetime."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date/time (e.g. 2024-01-31T00:00:00Z)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not value.strip() or len(value) > 64:
            raise self.make_error("invalid")
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            match = _SPACE_OFFSET.match(text)
            if not match:
                raise self.make_error("invalid") from None
            try:
                parsed = datetime.fromisoformat(f"{match.group(1)}+{match.group(2)}")
            except ValueError:
                raise self.make_error("invalid") from None
        try:
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=timezone.utc)
            return parsed.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise self.make_error("invalid") from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.isoformat()


class StrictFloat(fields.Float):
    """A JSON number (an integer is fine); a string or a boolean is refused, as Integer(strict=True) does."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)
