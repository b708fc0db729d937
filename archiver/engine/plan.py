"""What a batch needs from a checked policy: the reflected table and its compiled predicate."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .graph import ObjectGraph
from .policy import PolicySpec
from .rowcodec import RowEncoder


@dataclass
class MemberTable:
    """A reflected table of an object (the root or a child) and how its rows are read and keyed."""

    name: str
    table: sa.Table
    pk: list[sa.Column]
    columns: list[Any]  # the select list (backend-adjusted, table column order)
    encoder: RowEncoder

    def __post_init__(self) -> None:
        self.names = [c.name for c in self.table.columns]
        self.pk_idx = [self.names.index(c.name) for c in self.pk]

    def key(self, row: Any) -> tuple:
        return tuple(row[i] for i in self.pk_idx)

    def values(self, row: Any, columns: tuple[str, ...]) -> tuple:
        return tuple(row[self.names.index(c)] for c in columns)


@dataclass
class TablePlan:
    """A reflected source table and the compiled pieces of its policy.

    Made by :func:`archiver.engine.check.check_policy` only. ``columns`` is the
    select list (table column order); ``pk_idx``/``date_idx`` index into it.
    ``predicate`` is ``age AND criteria`` with the cutoff bound. ``graph``:
    the tables that move with each row and the references that hold rows back;
    ``members`` the reflected tables of the object (the root's included),
    ``hold_tables`` those whose references hold rows back.
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
    graph: ObjectGraph
    members: dict[str, MemberTable]
    hold_tables: dict[str, sa.Table]
    extra: dict[str, Any] = field(default_factory=dict)  # room for a backend's cached statements

    @property
    def table_name(self) -> str:
        return self.spec.table_name
