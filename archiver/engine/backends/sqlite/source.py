"""SQLite source: BEGIN IMMEDIATE holds the write lock for a batch; dates may be TEXT;
payloads built by SQLite's ``json_object()`` in the batch SELECT.

See :mod:`..serverjson`. SQLite is dynamically typed, so each column has a
condition on its stored value (``typeof()`` and shape); a row where one fails
is exotic and goes through the generic encoder. Rendered by SQLite:

* INTEGER-affinity columns holding integers → digits; BOOLEAN holding
  integers → true/false; text columns holding text → a JSON string (SQLite
  escapes exactly as orjson)
* NUMERIC/DECIMAL with a scale of at most 6 → ``"%.<scale>f"``, as
  SQLAlchemy's decimal conversion writes it, when SQLite's printf is provably
  the same (see :func:`_numeric_member`)
* DATETIME/DATE holding ISO text that Python parses and writes back but for
  the separator: ``YYYY-MM-DD[ T]HH:MM:SS[.fff|.ffffff]`` →
  ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` (``datetime.fromisoformat(...).isoformat()``),
  ``YYYY-MM-DD``; the calendar date and time are checked, since SQLite's own
  date functions accept 2025-02-30 and 24:00 where Python does not

REAL, BLOB, JSON, TIME, untyped columns and NUMERIC with more decimals are
encoded in Python. The row date comes out as UTC text for those DATETIME/DATE
values, and the DELETE passes its keys as one JSON array (``json_each``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

import orjson
import sqlalchemy as sa

from ...errors import UnsupportedDateColumn
from ...graph import Reference
from ...plan import TablePlan
from ..base import type_name
from ..serverjson import Member, ServerJsonSourceOps
from . import errors
from .capabilities import CAPABILITIES
from .connections import pragmas
from .types import LenientSQLiteDate, LenientSQLiteDateTime, LenientText, lenient_sqlite_type

_DAY = "[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]"
_DATETIME = _DAY + "[ T][0-2][0-9]:[0-5][0-9]:[0-5][0-9]"


def _q(text: str) -> sa.ColumnElement[str]:
    return sa.literal(text, sa.Text)


def _cat(*parts: Any) -> sa.ColumnElement[str]:
    out = parts[0]
    for part in parts[1:]:
        out = out.op("||")(part)
    return out


def _typeof_in(expr: Any, *kinds: str) -> sa.ColumnElement[bool]:
    kind = sa.func.typeof(expr)
    return kind == _q(kinds[0]) if len(kinds) == 1 else kind.in_([_q(k) for k in kinds])


def _real_day(day: Any) -> sa.ColumnElement[bool]:
    """A calendar date Python accepts (a '+0 days' round trip normalises 2025-02-30, so it differs)."""
    return sa.and_(day >= _q("0001"), sa.or_(sa.func.substr(day, 9, 2) <= _q("28"),
                                            sa.func.date(day, "+0 days") == day))


def _datetime_ok(expr: Any) -> sa.ColumnElement[bool]:
    shape = sa.or_(expr.op("GLOB")(_q(_DATETIME)),
                   expr.op("GLOB")(_q(_DATETIME + ".[0-9][0-9][0-9]")),
                   expr.op("GLOB")(_q(_DATETIME + ".[0-9][0-9][0-9][0-9][0-9][0-9]")))
    return sa.and_(_typeof_in(expr, "text"), shape, sa.func.substr(expr, 12, 2) < _q("24"),
                   sa.func.substr(expr, 6, 2).between(_q("01"), _q("12")), sa.func.substr(expr, 9, 2) >= _q("01"),
                   _real_day(sa.func.substr(expr, 1, 10)))


def _date_ok(expr: Any) -> sa.ColumnElement[bool]:
    return sa.and_(_typeof_in(expr, "text"), expr.op("GLOB")(_q(_DAY)),
                   sa.func.substr(expr, 6, 2).between(_q("01"), _q("12")), sa.func.substr(expr, 9, 2) >= _q("01"),
                   _real_day(expr))


def _datetime_value(expr: Any) -> sa.ColumnElement[str]:
    """'YYYY-MM-DDTHH:MM:SS' plus the fraction as isoformat writes it (none when zero, else 6 digits)."""
    head = _cat(sa.func.substr(expr, 1, 10), _q("T"), sa.func.substr(expr, 12, 8))
    n = sa.func.length(expr)
    fraction = sa.func.substr(expr, 20)
    return sa.case((n == 19, head),
                   (fraction.in_([_q(".000"), _q(".000000")]), head),
                   (n == 23, _cat(head, fraction, _q("000"))),
                   else_=_cat(head, fraction))


def _numeric_member(column: sa.Column, scale: int) -> Member | None:
    """``"%.<scale>f" % value`` as SQLAlchemy's decimal conversion (then ``str(Decimal)``) writes it.

    SQLite's printf does not round like Python's, so its text is used only when
    it reads back as exactly the stored value and |x| < 10**(13 - scale): then
    it is the one number with ``scale`` decimals that close to x, which is what
    Python's correctly rounded "%f" writes too. ``str(Decimal(text))`` is the
    text itself for scale <= 6. REAL zero (perhaps -0.0) is exotic.
    """
    if not 0 <= scale <= 6:
        return None
    text = sa.func.printf(f"%.{scale}f", column)
    kind = sa.func.typeof(column)
    ok = sa.or_(column.is_(None), sa.and_(
        kind.in_([_q("integer"), _q("real")]), sa.func.abs(column) < 10 ** (13 - scale),
        sa.cast(text, sa.REAL) == column, sa.or_(kind == _q("integer"), column != 0)))
    return Member(column, value=sa.func.iif(column.is_(None), sa.null(), text), ok=ok)


def sqlite_member(column: sa.Column, col_type: sa.types.TypeEngine) -> Member | None:
    """How SQLite renders ``column`` as the generic path reads it with ``col_type`` (None: Python)."""
    t = col_type
    nullable = column.nullable is not False

    def guarded(ok: Any) -> Any:
        return sa.or_(column.is_(None), ok) if nullable else ok

    if isinstance(t, LenientSQLiteDateTime):
        return Member(column, value=_datetime_value(column), ok=guarded(_datetime_ok(column)))
    if isinstance(t, LenientSQLiteDate):
        return Member(column, value=column, ok=guarded(_date_ok(column)))
    if isinstance(t, LenientText):
        return None  # TIME
    if isinstance(t, sa.Float):
        return None  # SQLite writes REAL with 15 significant digits, Python with as many as it takes
    if isinstance(t, sa.Numeric):
        return _numeric_member(column, t._effective_decimal_return_scale) if t.asdecimal else None
    if isinstance(t, sa.Boolean):
        value = sa.case((column.is_(None), sa.null()), (column != 0, sa.func.json("true")),
                        else_=sa.func.json("false"))
        return Member(column, value=value, ok=_typeof_in(column, "integer", "null"))
    if isinstance(t, sa.Integer):
        return Member(column, value=column, ok=_typeof_in(column, "integer", "null"))
    if isinstance(t, sa.String):
        return Member(column, value=column, ok=_typeof_in(column, "text", "null"))
    return None


class SQLiteSourceOps(ServerJsonSourceOps):
    """SQLite: BEGIN IMMEDIATE holds the write lock for the batch; dates may be TEXT; payloads
    built by ``json_object()``."""

    capabilities = CAPABILITIES
    max_params = 30000  # SQLite >= 3.32 allows 32766 variables
    raw_rows = True

    def explain(self, exc: BaseException) -> str:
        return errors.reason(exc) or super().explain(exc)

    def connect(self) -> sa.Connection:
        return self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        # A larger page cache for the run: the DELETEs touch the date index all over.
        return pragmas(conn, cache_size=-8000)

    def select_column(self, column: sa.Column) -> Any:
        lenient = lenient_sqlite_type(column.type)
        if lenient is None:
            return column
        if column.primary_key:
            # Key values must round-trip byte for byte into the keyset and the DELETE: keep the text.
            return sa.type_coerce(column, sa.String).label(column.name)
        return sa.type_coerce(column, lenient).label(column.name)

    def key_column(self, column: sa.Column) -> Any:
        if lenient_sqlite_type(column.type) is None:
            return column
        return sa.type_coerce(column, sa.String)

    def age_predicate(self, table: sa.Table, column: sa.Column, cutoff: datetime) -> sa.ColumnElement[bool]:
        # SQLite keeps dates as text in whatever format the writer used. datetime()
        # normalises 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM:SS[.fff]', the 'T' form and a
        # trailing 'Z'/'+HH:MM' (converted to UTC) to 'YYYY-MM-DD HH:MM:SS', dropping
        # fractions. The cutoff is a whole second, so floor(value) < cutoff <=> value < cutoff.
        ctype = column.type
        if not isinstance(ctype, (sa.DateTime, sa.Date, sa.String, sa.types.NullType)):
            raise UnsupportedDateColumn(table.name, column.name, type_name(ctype))
        text = cutoff.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return sa.func.datetime(sa.type_coerce(column, sa.String)) < sa.literal(text, sa.String)

    def oldest_date(self, conn: sa.Connection, plan: TablePlan) -> datetime | None:
        # The dates are text in any of the forms age_predicate reads: the minimum of their
        # normalised UTC form ('YYYY-MM-DD HH:MM:SS'), not of the text as written.
        value = sa.func.datetime(sa.type_coerce(plan.date_column, sa.String))
        oldest = conn.execute(sa.select(sa.func.min(value)).where(plan.predicate)).scalar()
        return datetime.fromisoformat(oldest).replace(tzinfo=timezone.utc) if oldest else None

    def foreign_keys(self, conn: sa.Connection) -> list[Reference]:
        # SQLAlchemy's SQLite reflection reads ON DELETE only from table-level FOREIGN KEY
        # clauses, not from a column's inline REFERENCES; PRAGMA foreign_key_list has both.
        refs = []
        for table in sa.inspect(conn).get_table_names():
            rows = conn.exec_driver_sql(f"PRAGMA foreign_key_list({_quote_ident(table)})").all()
            by_id: dict[int, list[Any]] = {}
            for row in rows:  # id, seq, table, from, to, on_update, on_delete, match
                by_id.setdefault(row[0], []).append(row)
            for parts in by_id.values():
                parts.sort(key=lambda r: r[1])
                parent = parts[0][2]
                parent_cols = tuple(r[4] for r in parts)
                if any(c is None for c in parent_cols):  # REFERENCES parent: its primary key
                    parent_cols = tuple(sa.inspect(conn).get_pk_constraint(parent)["constrained_columns"])
                refs.append(Reference(table, tuple(r[3] for r in parts), parent, parent_cols,
                                      str(parts[0][6] or "NO ACTION").upper()))
        return refs

    def date_sample_ok(self, column: sa.Column) -> sa.ColumnElement[bool] | None:
        # Text in an ISO 8601 shape that datetime() reads (what age_predicate compares). A number
        # would be read as a Julian day (a Unix epoch never as itself): not a date here.
        value = sa.type_coerce(column, sa.String)
        return sa.and_(sa.func.typeof(column) == _q("text"),
                       value.op("GLOB")(_q(_DAY + "*")),
                       sa.func.datetime(value).is_not(None))

    def member(self, column: sa.Column, col_type: sa.types.TypeEngine) -> Member | None:
        return sqlite_member(column, col_type)

    def object_expr(self, members: list[tuple[str, Member]]) -> sa.ColumnElement[str]:
        args: list[Any] = []
        for key, m in members:
            args += [_q(key), m.value]
        conditions = [m.ok for _key, m in members if m.ok is not None]
        obj = sa.func.json_object(*args)
        return sa.type_coerce(sa.case((sa.and_(*conditions), obj), else_=sa.null()) if conditions else obj, sa.Text)

    def date_select_column(self, plan: TablePlan) -> Any:
        # The stored value as is: to_utc_datetime parses text itself (the lenient
        # type's parse first gives the same instant, one conversion later).
        return sa.type_coerce(plan.date_column, sa.String).label(f"{plan.date_column.name}__raw")

    def row_date_text_column(self, plan: TablePlan) -> sa.ColumnElement[str] | None:
        # Trusted only for rows without exotic values, i.e. whose date passed the member's check.
        t = plan.columns[plan.date_idx].type
        col = plan.date_column
        if isinstance(t, LenientSQLiteDateTime):
            n = sa.func.length(col)
            fraction = sa.case((n == 19, _q(".000000")), (n == 23, _cat(sa.func.substr(col, 20), _q("000"))),
                               else_=sa.func.substr(col, 20))
            return _cat(sa.func.substr(col, 1, 10), _q(" "), sa.func.substr(col, 12, 8), fraction)
        if isinstance(t, LenientSQLiteDate):
            return _cat(col, _q(" 00:00:00.000000"))
        return None

    def one_of(self, column: Any, values: list[Any]) -> tuple[sa.ColumnElement[bool], dict[str, Any]] | None:
        # One JSON array parameter instead of thousands of bound values.
        if not self.fast_enabled or not values or not _all_int_or_text([(v,) for v in values]):
            return None
        listed = sa.select(sa.column("value")).select_from(sa.func.json_each(sa.bindparam("one_of", type_=sa.Text)))
        return column.in_(listed.scalar_subquery()), {"one_of": orjson.dumps(values).decode()}

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        # One JSON array parameter instead of thousands of bound keys.
        if not self.fast_enabled or len(plan.pk) != 1 or not _all_int_or_text(keys):
            return super().delete_keys(conn, plan, keys)
        stmt = plan.extra.get("fast_delete")
        if stmt is None:
            keys_json = sa.select(sa.column("value")).select_from(
                sa.func.json_each(sa.bindparam("keys", type_=sa.Text)))
            stmt = plan.extra["fast_delete"] = sa.delete(plan.table).where(
                self.key_column(plan.pk[0]).in_(keys_json.scalar_subquery()))
        return conn.execute(stmt, {"keys": orjson.dumps([k[0] for k in keys]).decode()}).rowcount


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _all_int_or_text(keys: list[tuple]) -> bool:
    kinds = {k[0].__class__ for k in keys}
    return kinds == {int} or kinds == {str}
