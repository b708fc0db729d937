"""Filters over archived payloads: ``status = 'closed' AND amount >= 100``, through the criteria parser.

``compile_payload_filter(text, table_name, columns, reads)`` compiles an expression written in the
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
exists, from the JSON types of an archived row (:func:`types_from_payload`). ``reads`` is the archive
backend's :class:`PayloadReads` (``ArchiveOps.payload_reads``): how its SQL reads one key of a
payload as text, as a number and as a date. No Flask here.
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

__all__ = ["CriteriaError", "PORTABLE_READS", "PayloadReads", "compile_payload_filter", "types_from_payload",
           "column_kind"]


class PayloadReads:
    """How an archive database's SQL reads one key of ``archived_rows.payload``: the portable
    spellings (SQLAlchemy's JSON accessors); a backend whose database needs others subclasses this
    and declares an instance as its ``ArchiveOps.payload_reads``."""

    def text(self, name: str) -> sa.ColumnElement[Any]:
        """The key's value as text: a string's content, a number's digits."""
        return archived_rows.c.payload[name].as_string()

    def number(self, name: str) -> sa.ColumnElement[Any]:
        """The key's value as a number (decimals are archived as exact strings: ``"99.50"``)."""
        return sa.cast(self.text(name), sa.Numeric())

    def temporal(self, name: str, target: sa.types.TypeEngine) -> sa.ColumnElement[Any] | None:
        """The key's value as ``target`` (a date, date-time or time type), or None where dates are
        compared as the ISO 8601 text they were archived as."""
        return None


#: The spellings of a backend that declares none of its own.
PORTABLE_READS = PayloadReads()


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


def _typed(name: str, col_type: sa.types.TypeEngine, reads: PayloadReads) -> tuple[sa.types.TypeEngine, Any]:
    """The type the criteria compiler sees for a column, and the payload expression it stands for."""
    kind = column_kind(col_type)
    if kind == "number":
        integer = not isinstance(col_type, (sa.Numeric, sa.Float)) or isinstance(col_type, sa.Integer)
        return (sa.BigInteger() if integer else sa.Numeric(asdecimal=True)), reads.number(name)
    if kind == "bool":
        return sa.Boolean(), archived_rows.c.payload[name].as_boolean()
    if kind in ("datetime", "date", "time"):
        aware = bool(getattr(col_type, "timezone", False))
        target = {"datetime": sa.DateTime(timezone=aware), "date": sa.Date(), "time": sa.Time()}[kind]
        typed = reads.temporal(name, target)
        if typed is not None:
            return target, typed
        return _IsoText({"datetime": datetime, "date": date, "time": time}[kind], aware), reads.text(name)
    if kind == "uuid":
        return _UuidText(), reads.text(name)
    if kind == "other":
        return sa.JSON(), reads.text(name)
    return sa.String(), reads.text(name)


def compile_payload_filter(text: str | None, table_name: str, columns: Mapping[str, sa.types.TypeEngine],
                           reads: PayloadReads = PORTABLE_READS) -> sa.ColumnElement[bool] | None:
    """``text`` (criteria syntax over the table's columns) as a condition on ``archived_rows``, in the
    archive backend's spellings (``reads``); None for blank text. Raises :class:`CriteriaError`."""
    if text is None or not str(text).strip():
        return None
    metadata = sa.MetaData()
    stand_ins: dict[int, Any] = {}
    cols = []
    for name, col_type in columns.items():
        shown, expr = _typed(name, col_type, reads)
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
