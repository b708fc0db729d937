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

import orjson
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
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
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


# --- fast path: one encoder per table -------------------------------------

def _float_or_text(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _b64(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return encode_value(value)


def converter_for(col_type: sa.types.TypeEngine) -> Any:
    """The Python-side conversion a column needs before orjson, or None.

    orjson already writes int/str/bool/None/date/datetime/time/UUID/dict/list
    exactly as :func:`encode_value` does; floats need the non-finite check
    (orjson would write null), Decimal/bytes/intervals/arrays go through
    :func:`encode_value`.
    """
    if isinstance(col_type, sa.types.TypeDecorator):
        col_type = col_type.impl_instance if hasattr(col_type, "impl_instance") else col_type.impl
    if isinstance(col_type, (sa.Integer, sa.String, sa.Boolean, sa.Date, sa.DateTime, sa.Uuid, sa.JSON)):
        return None
    if isinstance(col_type, sa.Float) and not getattr(col_type, "asdecimal", False):
        return _float_or_text
    if isinstance(col_type, sa.LargeBinary) or isinstance(col_type, sa.types._Binary):
        return _b64
    return encode_value


def orjson_default(value: Any) -> Any:
    out = encode_value(value)
    if out is value:  # pragma: no cover - encode_value always changes unsupported types
        return str(value)
    return out


class RowEncoder:
    """Encode result rows of one table (in ``columns`` order) to JSON payload text.

    ``dumps(row)`` equals ``orjson.dumps(encode_row(dict(zip(names, row))))``
    (the generic encoding) but converts only the columns whose type needs it.
    """

    def __init__(self, columns: Sequence[sa.Column]) -> None:
        self.names = [str(c.name) for c in columns]  # plain str: orjson refuses str subclasses as keys
        self._converters = [(i, fn) for i, c in enumerate(columns) if (fn := converter_for(c.type)) is not None]

    def payload(self, row: Sequence[Any]) -> dict[str, Any]:
        """The payload as a dict (the generic encoding, used as the reference)."""
        return {name: encode_value(value) for name, value in zip(self.names, row)}

    def dumps(self, row: Sequence[Any]) -> str:
        values = list(row)
        for i, fn in self._converters:
            v = values[i]
            if v is not None:
                values[i] = fn(v)
        try:
            return orjson.dumps(dict(zip(self.names, values))).decode()
        except (TypeError, orjson.JSONEncodeError):
            # A value of a type the column did not announce (SQLite is dynamically typed,
            # integers beyond 64 bits, aware times, ...): fall back to the generic encoding.
            payload = self.payload(row)
            try:
                return orjson.dumps(payload, default=orjson_default).decode()
            except TypeError:  # integers beyond 64 bits: the standard library writes them
                return json.dumps(payload, default=orjson_default, ensure_ascii=False, separators=(",", ":"))
