"""Turn source rows into JSON payloads and back, keeping every type.

Encoding (``encode_value``): date/time as ISO 8601 (with offset when the value
has one), Decimal as an exact string, bytes as base64, UUID as text, NULL as
null, JSON values as they are. Decoding (``decode_row``) uses the reflected
column types of the source table to rebuild the original Python values.
"""
from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa


def encode_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dict, list)):
        return value
    return str(value)


def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: encode_value(val) for key, val in row.items()}


def canonical_pk(values: Sequence[Any]) -> str:
    """Canonical text of a primary key: ``42`` for one column, ``["eu",42]`` for several."""
    if len(values) == 1:
        v = encode_value(values[0])
        return v if isinstance(v, str) else json.dumps(v)
    return json.dumps([encode_value(v) for v in values], separators=(",", ":"))


def to_utc_datetime(value: Any) -> datetime | None:
    """A date/time-like value as an aware UTC datetime (naive values are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return None


def _python_type(col_type: sa.types.TypeEngine) -> type | None:
    try:
        return col_type.python_type
    except NotImplementedError:
        return None


def decode_value(value: Any, col_type: sa.types.TypeEngine) -> Any:
    """Rebuild a Python value from its JSON form, for a column of ``col_type``."""
    if value is None:
        return None
    if isinstance(col_type, sa.JSON):
        return value
    ptype = _python_type(col_type)
    if ptype is None:
        return value
    if ptype is datetime:
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if ptype is date:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else value
    if ptype is time:
        return time.fromisoformat(value) if isinstance(value, str) else value
    if ptype is timedelta:
        return timedelta(seconds=float(value))
    if ptype is Decimal:
        if isinstance(col_type, sa.Float) and not getattr(col_type, "asdecimal", False):
            return float(value)
        return Decimal(str(value))
    if ptype is float:
        return float(value)
    if ptype is bool:
        return bool(value)
    if ptype is int:
        return int(value)
    if ptype is bytes:
        return base64.b64decode(value) if isinstance(value, str) else value
    if ptype is uuid.UUID:
        if getattr(col_type, "as_uuid", True) is False:
            return str(value)
        return uuid.UUID(str(value))
    return value


def decode_row(payload: Mapping[str, Any], columns: Iterable[sa.Column]) -> dict[str, Any]:
    """Payload → row dict for ``table.insert()``; keys not in the table are dropped."""
    out: dict[str, Any] = {}
    for col in columns:
        if col.name in payload:
            out[col.name] = decode_value(payload[col.name], col.type)
    return out
