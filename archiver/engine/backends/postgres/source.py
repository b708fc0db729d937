"""PostgreSQL source: FOR UPDATE row locks (READ COMMITTED re-checks the predicate after a
lock wait); payloads built by the server, streamed from a server-side cursor; array DELETE.

The batch SELECT ... FOR UPDATE returns each row's payload text (see
:mod:`..serverjson`); these types are rendered by the server, byte for byte as the
Python encoder writes them:

* smallint/integer/bigint → digits; boolean → true/false
* text/varchar/char/enum → ``to_json`` (same escapes as orjson)
* numeric → the exact string (``"12.30"``); a value Python's ``str(Decimal)``
  would write in exponent form (|x| < 1e-6, or 0 with more than 6 decimals)
  is exotic
* timestamp / timestamptz / date → ISO 8601 as ``datetime.isoformat()``
  (6-digit fraction only when non-zero; the session's offset ``+HH:MM`` for
  timestamptz, as psycopg2 reads it); years outside 1..9999, infinities and
  offsets with seconds are exotic
* uuid → text; bytea → base64 without line breaks

Other types (float, json/jsonb, arrays, interval, time, money, ...) are
encoded in Python; exotic values send their row through the generic encoder.
The DELETE passes the keys as one array (``= ANY(CAST(:keys AS type[]))``).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from ...plan import TablePlan
from ..serverjson import ServerJsonSourceOps
from . import errors, signals
from .capabilities import CAPABILITIES
from .copy import run_copy


_ISO_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS'


def _q(text: str) -> sa.ColumnElement[str]:
    return sa.literal(text, sa.Text)


def _quoted(expr: Any) -> sa.ColumnElement[str]:
    return _q('"').op("||")(expr).op("||")(_q('"'))


def _fraction(expr: Any) -> sa.ColumnElement[str]:
    """'.ffffff' when the value has a fraction of a second, else '' (like isoformat)."""
    return sa.case((expr == sa.func.date_trunc("second", expr), _q("")), else_=sa.func.to_char(expr, ".US"))


def _year_ok(expr: Any) -> sa.ColumnElement[bool]:
    # Python dates hold years 1..9999; infinities (psycopg2 reads them as date/datetime.max) are exotic too.
    return sa.extract("year", expr).between(1, 9999)


def pg_value_fragment(expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
    """The server-side JSON text of a PostgreSQL column value (None: encode it in Python)."""
    t = col_type
    if isinstance(t, sa.Boolean):
        return sa.case((expr, _q("true")), else_=_q("false"))
    if isinstance(t, sa.Integer):
        return sa.cast(expr, sa.Text)
    if isinstance(t, sa.Float):
        return None  # float text is not always Python's repr (3 vs 3.0, 1e+100 vs 1e100)
    if isinstance(t, sa.Numeric):
        text = _quoted(sa.cast(expr, sa.Text))
        if t.scale is not None and 0 <= t.scale <= 6:
            return text  # stored with exactly `scale` decimals: never exponent form in Python
        exponent_form = sa.or_(sa.and_(expr == 0, sa.func.scale(expr) > 6),
                               sa.and_(expr != 0, sa.func.abs(expr) < sa.literal(Decimal("0.000001"), sa.Numeric)))
        return sa.case((exponent_form, sa.null()), else_=text)
    if isinstance(t, sa.DateTime):
        body = sa.func.to_char(expr, _ISO_SECONDS).op("||")(_fraction(expr))
        ok = _year_ok(expr)
        if t.timezone:
            body = body.op("||")(sa.func.to_char(expr, "TZH:TZM"))
            ok = sa.and_(ok, sa.extract("timezone", expr) % 60 == 0)
        return sa.case((ok, _quoted(body)), else_=sa.null())
    if isinstance(t, sa.Date):
        return sa.case((_year_ok(expr), _quoted(sa.func.to_char(expr, "YYYY-MM-DD"))), else_=sa.null())
    if isinstance(t, sa.Uuid):
        return _quoted(sa.cast(expr, sa.Text))
    if isinstance(t, sa.LargeBinary):
        return _quoted(sa.func.translate(sa.func.encode(expr, "base64"), "\n", ""))
    if isinstance(t, sa.String) and not isinstance(t, sa.JSON):
        return sa.cast(sa.func.to_json(expr), sa.Text)
    return None


class PostgresSourceOps(ServerJsonSourceOps):
    """PostgreSQL source: server-built payloads streamed from a server-side cursor, array DELETE."""

    capabilities = CAPABILITIES
    max_params = 60000

    def explain(self, exc: BaseException) -> str:
        return errors.reason(exc) or super().explain(exc)

    def is_lock_conflict(self, exc: BaseException) -> bool:
        return errors.is_lock_conflict(exc)

    def value_fragment(self, expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
        return pg_value_fragment(expr, col_type)

    def row_date_text_column(self, plan: TablePlan) -> sa.ColumnElement[str] | None:
        col, t = plan.date_column, plan.date_column.type
        if isinstance(t, sa.DateTime):
            # Naive timestamps are UTC by convention; timestamptz is converted to UTC.
            utc = sa.func.timezone("UTC", col) if t.timezone else col
            text = sa.func.to_char(utc, "YYYY-MM-DD HH24:MI:SS.US")
        elif isinstance(t, sa.Date):
            utc = col
            text = sa.func.to_char(col, "YYYY-MM-DD").op("||")(_q(" 00:00:00.000000"))
        else:
            return None
        return sa.case((_year_ok(utc), text), else_=sa.null())

    # --- COPY passthrough: the batch goes from COPY … TO STDOUT to COPY … FROM STDIN as bytes ---
    def copy_out_statement(self, plan: TablePlan, after: tuple | None, limit: int, archived_at: datetime,
                           run_id: int | None) -> tuple[str, dict[str, Any]] | None:
        """``COPY (SELECT … FOR UPDATE) TO STDOUT`` of the next batch as ``archived_rows`` lines
        (table_name, source_pk, payload, row_date, archived_at, run_id) with its parameters, or
        None when the server does not write whole records of this table (one integer key, every
        column rendered by the server). A row with a value the server cannot render has a NULL
        payload (the archive's COPY refuses it: that batch goes the generic way)."""
        if not self.fast_enabled or len(plan.pk) != 1 or not isinstance(plan.pk[0].type, sa.Integer):
            return None
        layout = self.layout(plan)
        if layout.single_object is None or layout.row_date_text is None:
            return None
        pk = plan.pk[0]
        items = [sa.literal(plan.table_name, sa.Text), sa.cast(pk, sa.Text), layout.items[layout.single_object],
                 layout.items[layout.row_date_text].op("||")(_q("+00")),
                 sa.literal(archived_at, sa.DateTime(timezone=True)), sa.literal(run_id, sa.BigInteger)]
        stmt = sa.select(*items).where(plan.predicate)
        if after is not None:
            stmt = stmt.where(pk > sa.literal(after[0], pk.type))
        stmt = stmt.order_by(pk).limit(sa.literal(limit, sa.Integer)).with_for_update(of=plan.table)
        compiled = stmt.compile(dialect=self.engine.dialect)
        return f"COPY ({compiled.string}) TO STDOUT", dict(compiled.params)

    def any_left(self, conn: sa.Connection, plan: TablePlan, after: tuple | None) -> bool:
        """Whether a row qualifies after ``after`` (no lock: the COPY takes them)."""
        pk = plan.pk[0]
        stmt = sa.select(pk).where(plan.predicate)
        if after is not None:
            stmt = stmt.where(pk > sa.literal(after[0], pk.type))
        return conn.execute(stmt.order_by(pk).limit(1)).first() is not None

    def copy_out(self, conn: sa.Connection, sql: str, params: dict[str, Any], sink: Any) -> None:
        """Run a COPY … TO STDOUT into ``sink`` (psycopg2 binds the parameters, as for every query)."""
        run_copy(conn, sql, sink, params)

    def delete_key_text(self, conn: sa.Connection, plan: TablePlan, keys: str) -> int:
        """DELETE the keys given as one array text (``{1,2,3}``)."""
        stmt = plan.extra.get("fast_delete_text")
        if stmt is None:
            col = plan.pk[0]
            array = sa.cast(sa.bindparam("keys", type_=sa.Text), pg.ARRAY(col.type))
            stmt = plan.extra["fast_delete_text"] = sa.delete(plan.table).where(col == sa.any_(array))
        return conn.execute(stmt, {"keys": keys}).rowcount

    def one_of(self, column: Any, values: list[Any]) -> tuple[sa.ColumnElement[bool], dict[str, Any]] | None:
        # One array parameter instead of thousands of bound values.
        if not self.fast_enabled or not values:
            return None
        array = sa.cast(sa.bindparam("one_of"), pg.ARRAY(column.type))
        return column == sa.any_(array), {"one_of": values}

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        if len(plan.pk) != 1 or not self.fast_enabled:
            return super().delete_keys(conn, plan, keys)
        stmt = plan.extra.get("fast_delete")
        if stmt is None:
            col = plan.pk[0]
            array = sa.cast(sa.bindparam("keys"), pg.ARRAY(col.type))
            stmt = plan.extra["fast_delete"] = sa.delete(plan.table).where(col == sa.any_(array))
        return conn.execute(stmt, {"keys": [k[0] for k in keys]}).rowcount

    def replica_lag(self, conn: sa.Connection) -> float | None:
        return signals.replica_lag(conn)

    def active_sessions(self, conn: sa.Connection) -> int | None:
        return signals.active_sessions(conn)
