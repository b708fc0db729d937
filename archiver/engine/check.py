"""The one policy check: used when a policy is saved, by preview, and at the start of every run.

:func:`check_policy` reflects the source table and returns a :class:`TablePlan`,
or raises :class:`InvalidPolicy` listing every problem by policy field:

* ``table_name``: the table exists and has a primary key;
* ``date_column``: the column exists and holds dates the engine compares
  correctly. A real DATE/DATETIME/TIMESTAMP column is accepted. On a database
  without a date type (``Capabilities.text_dates``: SQLite) any column is
  accepted whose sampled values — MIN, MAX, and those of the first and last
  rows by key, among the rows the custom criteria select — are ISO 8601 text
  (``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS[.ffffff]``, the ``T`` form, optionally
  ``Z`` or ``±HH:MM``). Numbers are refused: SQLite would read them as Julian
  days, never as Unix epochs. With no value to sample, the declared type
  decides (a date type or TEXT). Elsewhere a text or numeric column is refused,
  naming the column, its type and a stored value;
* ``custom_criteria``: it compiles for the table (see :mod:`.criteria`);
* ``children`` (and ``table_name``): the object graph (:mod:`.graph`) — the
  tables the policy names as children exist, their columns exist and match the
  referenced columns' types, every table of the object has a primary key, and
  no two tables are children of each other (a cycle).

A problem with a single cause raises its own subclass (TableNotFound,
NoPrimaryKey, ColumnNotFound, UnsupportedDateColumn, NotADateValue); several
raise one InvalidPolicy with all of them.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .backends.base import SourceOps, type_name
from .criteria import CriteriaError, compile_criteria
from .errors import (ColumnNotFound, InvalidPolicy, NoPrimaryKey, NotADateValue, TableNotFound,
                     UnsupportedDateColumn)
from .graph import ObjectGraph, build_graph
from .plan import MemberTable, TablePlan
from .policy import NamedChild, PolicySpec, archive_cutoff, as_utc
from .rowcodec import RowEncoder
from .throttle import SIGNAL_FIELDS

#: How much of an offending value a message quotes.
_QUOTE_CHARS = 40
_NOT_ISO = ("dates are ISO 8601 text such as '2024-05-31' or '2024-05-31 13:45:00'; numbers such as "
            "Unix epochs are not read as dates")


def reflect_source_table(conn: sa.Connection, table_name: str, ops: SourceOps) -> sa.Table:
    """The source table named exactly ``table_name`` (raises TableNotFound)."""
    if not sa.inspect(conn).has_table(table_name):
        raise TableNotFound(table_name)
    try:
        return ops.reflect_table(conn, table_name)
    except sa.exc.NoSuchTableError:
        raise TableNotFound(table_name) from None


def check_policy(conn: sa.Connection, spec: PolicySpec, ops: SourceOps, now: datetime) -> TablePlan:
    """Reflect ``spec.table_name`` and check the policy against it; the plan for the cutoff at ``now``.

    Raises InvalidPolicy (or one of its subclasses) naming every problem;
    reads a few rows of the table, changes nothing.
    """
    table = reflect_source_table(conn, spec.table_name, ops)
    problems: list[InvalidPolicy] = []
    pk = list(table.primary_key.columns)
    if not pk:
        problems.append(NoPrimaryKey(spec.table_name))
    criteria = None
    if spec.custom_criteria is not None:
        try:
            criteria = compile_criteria(spec.custom_criteria, table)
        except CriteriaError as exc:
            problems.append(InvalidPolicy({"custom_criteria": [str(exc)]}))
    date_col = table.c.get(spec.date_column)
    if date_col is None:
        problems.append(ColumnNotFound(spec.table_name, spec.date_column))
    else:
        problem = _date_column_problem(conn, table, date_col, pk, criteria, ops)
        if problem is not None:
            problems.append(problem)
    graph = None
    members: dict[str, MemberTable] = {}
    hold_tables: dict[str, sa.Table] = {}
    unreadable = _signal_problems(spec, ops, conn.dialect.name)
    if unreadable:
        problems.append(InvalidPolicy(unreadable))
    named = _named_children_problems(conn, table, spec.children, ops)
    if named:
        problems.append(InvalidPolicy({"children": named}))
    else:
        try:
            graph = build_graph(spec.table_name, ops.foreign_keys(conn), spec.children)
        except InvalidPolicy as exc:
            problems.append(exc)
        else:
            members, hold_tables, member_problems = _reflect_object(conn, table, graph, ops)
            problems += member_problems
    if len(problems) == 1:
        raise problems[0]
    if problems:
        merged: dict[str, list[str]] = {}
        for p in problems:
            for field, messages in p.problems.items():
                merged.setdefault(field, []).extend(messages)
        raise InvalidPolicy(merged, "; ".join(str(p) for p in problems))
    assert date_col is not None and graph is not None
    cutoff = archive_cutoff(spec, as_utc(now))
    age = ops.age_predicate(table, date_col, cutoff)
    predicate = age if criteria is None else sa.and_(age, criteria)
    names = [c.name for c in table.columns]
    plan = TablePlan(
        spec=spec, table=table, pk=pk, date_column=date_col, columns=[ops.select_column(c) for c in table.columns],
        pk_idx=[names.index(c.name) for c in pk], date_idx=names.index(date_col.name),
        cutoff=cutoff, predicate=predicate, encoder=RowEncoder(list(table.columns)),
        graph=graph, members=members, hold_tables=hold_tables,
    )
    for name, member in members.items():
        member.plan = plan if name == table.name else _member_plan(member, plan)
    return plan


def _signal_problems(spec: PolicySpec, ops: SourceOps, database: str) -> dict[str, list[str]]:
    """A throttle limit on a signal the source's database cannot report, by field."""
    problems: dict[str, list[str]] = {}
    for signal, names in SIGNAL_FIELDS.items():
        if signal in ops.capabilities.signals:
            continue
        for name in names:
            if getattr(spec.throttle, name) is not None:
                problems[name] = [f"A {database} source cannot report {signal.replace('_', ' ')}."]
    return problems


def _member_plan(member: MemberTable, root: TablePlan) -> TablePlan:
    """A child table's own plan: what a backend's fast SELECT needs to read its rows (no date, no
    predicate: its rows are chosen by the rows they reference)."""
    return TablePlan(spec=root.spec, table=member.table, pk=member.pk, date_column=member.pk[0],
                     columns=member.columns, pk_idx=member.pk_idx, date_idx=member.pk_idx[0], cutoff=root.cutoff,
                     predicate=sa.true(), encoder=member.encoder, graph=root.graph, members={}, hold_tables={})


def _member(table: sa.Table, ops: SourceOps) -> MemberTable:
    return MemberTable(table.name, table, list(table.primary_key.columns),
                       [ops.select_column(c) for c in table.columns], RowEncoder(list(table.columns)))


def _reflect_object(conn: sa.Connection, root: sa.Table, graph: ObjectGraph,
                    ops: SourceOps) -> tuple[dict[str, MemberTable], dict[str, sa.Table], list[InvalidPolicy]]:
    """The object's tables, reflected; a child table without a primary key is a problem."""
    tables = {root.name: root}
    for name in {*graph.members, *(h.child for h in graph.holds)} - {root.name}:
        tables[name] = reflect_source_table(conn, name, ops)
    problems = []
    for name in graph.members[1:]:
        if not list(tables[name].primary_key.columns):
            problems.append(InvalidPolicy(
                {"children": [f"Child table {name} has no primary key; its rows cannot be archived safely"]},
                f"child table '{name}' of '{root.name}' has no primary key; its rows cannot be archived safely"))
    members = {name: _member(tables[name], ops) for name in graph.members}
    return members, {h.child: tables[h.child] for h in graph.holds}, problems


def _named_children_problems(conn: sa.Connection, root: sa.Table, children: tuple[NamedChild, ...],
                             ops: SourceOps) -> list[str]:
    """What is wrong with the child relations a policy names (tables, columns, types)."""
    problems: list[str] = []
    names = {root.name: root}
    insp = sa.inspect(conn)
    for i, child in enumerate(children, 1):
        where = f"child {i} ({child.table})"
        for name in (child.table, child.parent or root.name):
            if name not in names:
                if not insp.has_table(name):
                    problems.append(f"{where}: table {name} not found in the source database")
                    continue
                names[name] = ops.reflect_table(conn, name)
        if child.table not in names or (child.parent or root.name) not in names:
            continue
        table, parent = names[child.table], names[child.parent or root.name]
        if not child.columns or len(child.columns) != len(child.references):
            problems.append(f"{where}: columns and references must name the same number of columns (at least one)")
            continue
        for col, ref in zip(child.columns, child.references):
            if col not in table.c:
                problems.append(f"{where}: column {col} not found in table {table.name}")
            elif ref not in parent.c:
                problems.append(f"{where}: column {ref} not found in table {parent.name}")
            elif not _comparable(table.c[col].type, parent.c[ref].type):
                problems.append(f"{where}: {table.name}.{col} ({type_name(table.c[col].type)}) cannot reference "
                                f"{parent.name}.{ref} ({type_name(parent.c[ref].type)})")
    return problems


def _comparable(a: sa.types.TypeEngine, b: sa.types.TypeEngine) -> bool:
    """Whether values of the two column types can be matched as keys (same kind of value)."""
    for kind in (sa.Integer, sa.String, sa.Numeric, sa.DateTime, sa.Date, sa.Uuid, sa.LargeBinary):
        if isinstance(a, kind) or isinstance(b, kind):
            return isinstance(a, kind) and isinstance(b, kind) or _same_python_type(a, b)
    return _same_python_type(a, b)


def _same_python_type(a: sa.types.TypeEngine, b: sa.types.TypeEngine) -> bool:
    try:
        return a.python_type is b.python_type
    except NotImplementedError:
        return type(a) is type(b)


def _date_column_problem(conn: sa.Connection, table: sa.Table, column: sa.Column, pk: list[sa.Column],
                         criteria: sa.ColumnElement[bool] | None, ops: SourceOps) -> InvalidPolicy | None:
    typed = isinstance(column.type, (sa.Date, sa.DateTime))
    if not ops.capabilities.text_dates:
        if typed:
            return None  # the database keeps only dates in it
        value = _first_value(conn, table, column, pk, criteria)
        detail = "text dates are accepted on SQLite only, which has no date type"
        if isinstance(column.type, (sa.Integer, sa.Numeric)):
            detail = "numbers such as Unix epochs are not read as dates"
        if value is not None:
            detail += f"; it holds {_quote(value)}"
        return UnsupportedDateColumn(table.name, column.name, type_name(column.type), detail)
    samples = [(value, good) for value, good in _samples(conn, table, column, pk, criteria, ops)
               if value is not None]
    for value, good in samples:
        if not good:
            return NotADateValue(table.name, column.name, _quote(value), _NOT_ISO)
    if not samples and not (typed or isinstance(column.type, (sa.Text, sa.types.NullType))):
        # Nothing stored to judge by: the declared type decides (a date type, or TEXT).
        return UnsupportedDateColumn(table.name, column.name, type_name(column.type),
                                     "it holds no values to check; declare it DATE, DATETIME, TIMESTAMP or TEXT")
    return None


def _raw(column: sa.Column) -> Any:
    """The stored value, without the column type's result conversion."""
    return sa.type_coerce(column, sa.String) if isinstance(column.type, (sa.Date, sa.DateTime, sa.Time)) \
        else column


def _samples(conn: sa.Connection, table: sa.Table, column: sa.Column, pk: list[sa.Column],
             criteria: sa.ColumnElement[bool] | None, ops: SourceOps) -> list[tuple[Any, bool]]:
    """(value, is a date) for MIN, MAX and the first and last rows by key of the selected rows."""
    where = [] if criteria is None else [criteria]
    raw = _raw(column)
    picks: list[sa.Select] = [sa.select(sa.func.min(raw).label("v")).where(*where),
                              sa.select(sa.func.max(raw).label("v")).where(*where)]
    if pk:
        base = sa.select(raw.label("v")).where(column.is_not(None), *where)
        picks += [base.order_by(*pk).limit(1), base.order_by(*[c.desc() for c in pk]).limit(1)]
    out = []
    for pick in picks:
        sub = pick.subquery()
        ok = ops.date_sample_ok(sub.c.v)
        row = conn.execute(sa.select(sub.c.v, ok if ok is not None else sa.true())).first()
        if row is not None:
            out.append((row[0], bool(row[1])))
    return out


def _first_value(conn: sa.Connection, table: sa.Table, column: sa.Column, pk: list[sa.Column],
                 criteria: sa.ColumnElement[bool] | None) -> Any:
    stmt = sa.select(_raw(column)).where(column.is_not(None), *([] if criteria is None else [criteria]))
    return conn.execute((stmt.order_by(*pk) if pk else stmt).limit(1)).scalar()


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS - 1] + "…"


__all__ = ["check_policy", "reflect_source_table"]
