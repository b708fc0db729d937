"""Reflect a source table once per run and fix what a batch needs from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .criteria import compile_criteria
from .errors import ColumnNotFound, NoPrimaryKey, TableNotFound
from .policy import PolicySpec, archive_cutoff
from .rowcodec import RowEncoder

if TYPE_CHECKING:  # pragma: no cover
    from .dialects import SourceOps


@dataclass
class TablePlan:
    """A reflected source table and the compiled pieces of its policy.

    ``columns`` is the select list (table column order); ``pk_idx``/``date_idx``
    index into it. ``predicate`` is ``age AND criteria`` with the cutoff bound.
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
    extra: dict[str, Any] = field(default_factory=dict)  # room for dialect fast paths (cached statements)

    @property
    def table_name(self) -> str:
        return self.spec.table_name


def reflect_source_table(conn: sa.Connection, table_name: str) -> sa.Table:
    """The source table named exactly ``table_name`` (raises TableNotFound)."""
    if not sa.inspect(conn).has_table(table_name):
        raise TableNotFound(table_name)
    try:
        return sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    except sa.exc.NoSuchTableError:
        raise TableNotFound(table_name) from None


def build_plan(conn: sa.Connection, spec: PolicySpec, now: datetime, ops: "SourceOps") -> TablePlan:
    """Reflect ``spec.table_name`` and compile its predicate for the cutoff at ``now``.

    Raises TableNotFound, ColumnNotFound, NoPrimaryKey, UnsupportedDateColumn or
    CriteriaError; none of them leaves anything half-done.
    """
    table = reflect_source_table(conn, spec.table_name)
    pk = list(table.primary_key.columns)
    if not pk:
        raise NoPrimaryKey(spec.table_name)
    if spec.date_column not in table.c:
        raise ColumnNotFound(spec.table_name, spec.date_column)
    date_col = table.c[spec.date_column]
    cutoff = archive_cutoff(spec, now)
    age = ops.age_predicate(table, date_col, cutoff)
    criteria = compile_criteria(spec.custom_criteria, table)
    predicate = age if criteria is None else sa.and_(age, criteria)
    names = [c.name for c in table.columns]
    columns = [ops.select_column(c) for c in table.columns]
    return TablePlan(
        spec=spec, table=table, pk=pk, date_column=date_col, columns=columns,
        pk_idx=[names.index(c.name) for c in pk], date_idx=names.index(date_col.name),
        cutoff=cutoff, predicate=predicate, encoder=RowEncoder(list(table.columns)),
    )
