"""Filters over archived payloads: ``status = 'closed' AND amount >= 100``, through the criteria parser.

``compile_payload_filter(text, table_name, columns, dialect)`` compiles an expression written in the
same language as a policy's ``custom_criteria`` (:mod:`.criteria`: one allow-list, bound
parameters only) into a condition on ``archived_rows.payload``. The expression names the archived
table's own columns; each becomes the JSON value of that key of the payload, read as the column's
type:

* numbers (integer, decimal, float columns) are compared as numbers (``CAST(… AS NUMERIC)``), so
  decimals archived as exact strings (``"99.50"``) compare by value;
* booleans as booleans, text, UUID and time of day as text;
* dates and date-times: on PostgreSQL cast to ``timestamp``/``timestamptz``/``date``; elsewhere
  compared as the ISO 8601 text they were archived as (the literal is written the same way:
  ``'2024-01-31'`` for a DATETIME column becomes ``2024-01-31T00:00:00``), which orders correctly
  because every value of a column is written in one format;
* JSON, binary and other columns only take ``IS [NOT] NULL`` (a missing key and a JSON ``null`` are
  both NULL).

``columns`` (name → SQLAlchemy type) come from the reflected source table, or, when it no longer
exists, from the JSON types of an archived row (:func:`types_from_payload`). No Flask here.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Mapping

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from .criteria import CriteriaError, compile_criteria
from .schema import archived_rows

__all__ = ["CriteriaError", "compile_payload_filter", "types_from_payload", "column_kind"]


class _IsoText(sa.types.TypeDecorator):
    """A date/time literal bound as the ISO 8601 text the payloads hold."""

    impl = sa.String
    cache_ok = True

    def __init__(self, kind: type, aware: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.aware = aware

    @property
    def python_type(self) -> type:  # what the criteria compiler coerces literals to
        return self.kind

    def coerce_compared_value(self, op: Any, value: Any) -> sa.types.TypeEngine:
        return self

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, datetime):
            if self.aware:
                value = (value.replace(tzinfo=timezone.utc) if value.tzinfo is None
                         else value.astimezone(timezone.utc))
            elif value.tzinfo is not None:
                value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat() if hasattr(value, "isoformat") else str(value)


class _UuidText(sa.types.TypeDecorator):
    impl = sa.String
    cache_ok = True

    @property
    def python_type(self) -> type:
        return uuid.UUID

    def coerce_compared_value(self, op: Any, value: Any) -> sa.types.TypeEngine:
        return self

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else str(value)


def column_kind(col_type: sa.types.TypeEngine) -> str:
    """number | bool | text | datetime | date | time | uuid | other, from a column type."""
    if isinstance(col_type, sa.JSON):
        return "other"
    try:
        py = col_type.python_type
    except NotImplementedError:
        return "text"
    if py is bool:
        return "bool"
    if issubclass(py, (int, float, Decimal)):
        return "number"
    if issubclass(py, str):
        return "text"
    if issubclass(py, datetime):
        return "datetime"
    if issubclass(py, date):
        return "date"
    if issubclass(py, time):
        return "time"
    if issubclass(py, uuid.UUID):
        return "uuid"
    return "other"


def types_from_payload(payload: Mapping[str, Any]) -> dict[str, sa.types.TypeEngine]:
    """Column types read off one archived payload (when the source table is gone): JSON numbers are
    numbers, true/false booleans, strings text, objects and arrays JSON (only IS NULL)."""
    out: dict[str, sa.types.TypeEngine] = {}
    for name, value in payload.items():
        if isinstance(value, bool):
            out[name] = sa.Boolean()
        elif isinstance(value, int):
            out[name] = sa.BigInteger()
        elif isinstance(value, float):
            out[name] = sa.Float()
        elif isinstance(value, (dict, list)):
            out[name] = sa.JSON()
        else:
            out[name] = sa.String()
    return out


def _typed(name: str, col_type: sa.types.TypeEngine, dialect: str) -> tuple[sa.types.TypeEngine, Any]:
    """The type the criteria compiler sees for a column, and the payload expression it stands for."""
    value = archived_rows.c.payload[name]
    text = value.as_string()
    kind = column_kind(col_type)
    postgres = dialect == "postgresql"
    if postgres:
        text = sa.cast(archived_rows.c.payload.op("->>")(sa.literal(name, sa.String)), sa.Text).collate("C")
    if kind == "number":
        integer = not isinstance(col_type, (sa.Numeric, sa.Float)) or isinstance(col_type, sa.Integer)
        shown = sa.BigInteger() if integer else sa.Numeric(asdecimal=True)
        if dialect in ("mysql", "mariadb"):
            return shown, value.as_numeric(65, 20)
        return shown, sa.cast(value.as_string() if not postgres else text, sa.Numeric())
    if kind == "bool":
        return sa.Boolean(), value.as_boolean()
    if kind in ("datetime", "date", "time"):
        aware = bool(getattr(col_type, "timezone", False))
        if postgres:
            target = {"datetime": sa.DateTime(timezone=aware), "date": sa.Date(), "time": sa.Time()}[kind]
            return target, sa.cast(sa.cast(archived_rows.c.payload.op("->>")(sa.literal(name, sa.String)),
                                           sa.Text), target)
        return _IsoText({"datetime": datetime, "date": date, "time": time}[kind], aware), text
    if kind == "uuid":
        return _UuidText(), text
    if kind == "other":
        return sa.JSON(), text
    return sa.String(), text


def compile_payload_filter(text: str | None, table_name: str, columns: Mapping[str, sa.types.TypeEngine],
                           dialect: str) -> sa.ColumnElement[bool] | None:
    """``text`` (criteria syntax over the table's columns) as a condition on ``archived_rows``, for the
    archive database's ``dialect`` name; None for blank text. Raises :class:`CriteriaError`."""
    if text is None or not str(text).strip():
        return None
    metadata = sa.MetaData()
    stand_ins: dict[int, Any] = {}
    cols = []
    for name, col_type in columns.items():
        shown, expr = _typed(name, col_type, dialect)
        column = sa.Column(name, shown)
        cols.append(column)
        stand_ins[id(column)] = expr
    table = sa.Table(table_name, metadata, *cols)
    condition = compile_criteria(text, table)
    if condition is None:
        return None

    def swap(element: Any) -> Any:
        if isinstance(element, sa.Column):
            return stand_ins.get(id(element))
        return None

    return visitors.replacement_traverse(condition, {}, swap)
