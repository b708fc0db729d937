"""Safe custom criteria (placeholder until the archival-engine issue lands).

`compile_criteria(text, table)` will parse an SQL boolean expression over the
table's own columns and compile it to a bound SQLAlchemy expression. Until the
safe parser exists, any non-empty criteria is rejected.
"""
from __future__ import annotations

import sqlalchemy as sa


class CriteriaError(ValueError):
    """The expression is not allowed; the message says why (safe to show)."""


def compile_criteria(text: str | None, table: sa.Table) -> sa.ColumnElement[bool] | None:
    if text is None or not text.strip():
        return None
    raise CriteriaError("custom_criteria is not supported yet")
