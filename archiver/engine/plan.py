"""What a batch needs from a checked policy: the reflected table and its compiled predicate."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .policy import PolicySpec
from .rowcodec import RowEncoder


@dataclass
class TablePlan:
    """A reflected source table and the compiled pieces of its policy.

    Made by :func:`archiver.engine.check.check_policy` only. ``columns`` is the
    select list (table column order); ``pk_idx``/``date_idx`` index into it.
    ``predicate`` is ``age AND criteria`` with the cutoff bound.
    """

    spec: PolicySpec
    table: sa.Table
    pk: list[sa.Column]
    date_column: sa.Column
    columns: list[Any]
    pk_idx: list[int]
    date_idx: int
    cutoff: datetime
    predicate: sa.ColumnElement[bool]
    encoder: RowEncoder
    extra: dict[str, Any] = field(default_factory=dict)  # room for a backend's cached statements

    @property
    def table_name(self) -> str:
        return self.spec.table_name
