"""MySQL/MariaDB source: FOR UPDATE (InnoDB), UTC session time zone, reads forced through the
primary key; payloads built by the server; key-list DELETEs as literal integers.

The batch SELECT … FOR UPDATE returns each row's payload text (see
:mod:`..serverjson`); rendered by the server:

* integer types → digits
* CHAR/VARCHAR/TEXT/ENUM → ``JSON_QUOTE`` (MariaDB writes control characters
  as ``\\u000B`` where orjson writes ``\\u000b``: the same JSON string)
* DECIMAL with at most 6 decimals → the exact string (``"12.30"``)
* DATETIME/TIMESTAMP/DATE → ISO 8601 as ``datetime.isoformat()`` (fraction
  only when non-zero); zero or partly-zero dates are exotic (PyMySQL keeps
  them as text: the generic encoder writes that text)
* BLOB/BINARY → base64 without line breaks

SET, JSON, FLOAT/DOUBLE, TIME, YEAR, BIT, DECIMAL with more than 6 decimals
and other types are encoded in Python. The date column is read as text and
parsed by ``datetime.fromisoformat`` (PyMySQL's own parser is pure Python).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ...plan import TablePlan
from ...rowcodec import to_utc_datetime
from ..base import Batch
from ..serverjson import ServerJsonSourceOps
from . import errors, signals
from .capabilities import CAPABILITIES
from .statements import execute_literal, force_primary_key


def _q(text: str) -> sa.ColumnElement[str]:
    return sa.literal(text, sa.Text)


def _date_ok(expr: Any) -> sa.ColumnElement[bool]:
    return sa.and_(expr >= _q("0001-01-01"), sa.func.month(expr) > 0, sa.func.dayofmonth(expr) > 0)


def mysql_value_fragment(expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
    """The server-side JSON text of a MySQL/MariaDB column value (None: encode it in Python)."""
    t = col_type
    if isinstance(t, sa.Integer):
        return sa.cast(expr, sa.Text)
    if isinstance(t, sa.Float):
        return None
    if isinstance(t, sa.Numeric):
        if t.scale is not None and 0 <= t.scale <= 6:
            return sa.func.concat(_q('"'), sa.cast(expr, sa.Text), _q('"'))
        return None
    if isinstance(t, sa.DateTime):
        fraction = sa.case((sa.func.microsecond(expr) == 0, _q("")), else_=sa.func.date_format(expr, ".%f"))
        body = sa.func.concat(_q('"'), sa.func.date_format(expr, "%Y-%m-%dT%H:%i:%s"), fraction, _q('"'))
        return sa.case((_date_ok(expr), body), else_=sa.null())
    if isinstance(t, sa.Date):
        body = sa.func.concat(_q('"'), sa.func.date_format(expr, "%Y-%m-%d"), _q('"'))
        return sa.case((_date_ok(expr), body), else_=sa.null())
    if isinstance(t, sa.types._Binary):
        return sa.func.concat(_q('"'), sa.func.replace(sa.func.to_base64(expr), "\n", ""), _q('"'))
    if isinstance(t, sa.String) and not isinstance(t, (mysql.SET, sa.JSON)):
        return sa.func.json_quote(expr)
    return None


class MySQLSourceOps(ServerJsonSourceOps):
    """MySQL/MariaDB source with payloads built by the server."""

    capabilities = CAPABILITIES
    max_params = 60000

    def explain(self, exc: BaseException) -> str:
        return errors.reason(exc) or super().explain(exc)

    def is_lock_conflict(self, exc: BaseException) -> bool:
        return errors.is_lock_conflict(exc)

    def column_reflected(self, inspector: Any, table: sa.Table, column: dict[str, Any]) -> None:
        # SQLAlchemy reflects DOUBLE and REAL as asdecimal=True types that read every value as a
        # Decimal rounded to 10 places (1.5e-12 would be archived as "0E-10"): read them as the
        # floats the server stores (encoded exactly, as on every other database).
        ctype = column["type"]
        if isinstance(ctype, sa.Float) and getattr(ctype, "asdecimal", False):
            ctype.asdecimal = False

    def prepare(self, conn: sa.Connection) -> Callable[[], None] | None:
        # TIMESTAMP columns are converted to/from the session time zone; use UTC.
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        conn.commit()
        return None

    def select_statement(self, plan: TablePlan, first: bool, columns: Sequence[Any] | None = None) -> sa.Select:
        # The keyset walk reads the primary key in order. Without the hint the optimizer may switch,
        # once rows are deleted, to an index on the date column plus a sort: every batch then reads
        # and locks every remaining old row (seen on MariaDB 10.11: 4 ms -> 280 ms per batch).
        return force_primary_key(super().select_statement(plan, first, columns), plan.table)

    #: Batches overlap only on tables the server estimates at this many rows or more: below
    #: that, overlapping batches gains nothing, and a deadlock between them (which InnoDB ends
    #: by rolling one back, and the pipeline redoes alone) costs more.
    min_pipeline_rows = 10_000

    def overlaps(self, plan: TablePlan, conn: sa.Connection) -> bool:
        # A composite-key list is deleted through a range that reads (and locks) rows past its
        # keys, maybe of the next batch, which waits for this one: one key column only.
        if len(plan.pk) != 1:
            return False
        if self.min_pipeline_rows <= 0:
            return True
        t = sa.table("TABLES", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"), sa.column("TABLE_ROWS"),
                     schema="information_schema")
        estimate = conn.execute(sa.select(t.c.TABLE_ROWS).where(
            t.c.TABLE_SCHEMA == sa.func.database(), t.c.TABLE_NAME == plan.table.name)).scalar()
        conn.rollback()
        return int(estimate or 0) >= max(self.min_pipeline_rows, 2 * (plan.spec.batch_size or 0))

    def prepare_overlapped(self, conn: sa.Connection) -> None:
        # READ COMMITTED: no gap locks, so the source's own writers wait for nothing but the
        # batches' rows, each locked FOR UPDATE from its read to its commit. The batch protocol
        # needs no more: a batch deletes exactly the keys it locked. (SQLAlchemy puts the level
        # back when the connection returns to the pool.)
        conn.rollback()
        conn.execution_options(isolation_level="READ COMMITTED")

    def delete_head(self, conn: sa.Connection, plan: TablePlan) -> str:
        """``DELETE FROM <table> WHERE ``: a list of keys and :meth:`delete_tail` follow."""
        return f"DELETE FROM {conn.dialect.identifier_preparer.format_table(plan.table)} WHERE "

    def delete_tail(self, conn: sa.Connection, plan: TablePlan, n: int) -> str:
        """`` ORDER BY <key> LIMIT n`` after a list of ``n`` keys.

        For a long key list on a small table (or with stale statistics) the server prefers a
        full scan to the key lookups, locking every row it passes: rows of the batch in flight
        on the other connection, a deadlock with it (MariaDB 10.11 plans a full scan for
        10,000 keys of a 20,000-row table). Ordered by the key and cut at ``n`` rows, the
        DELETE walks the listed keys in the primary key instead. The list holds exactly the ``n`` keys the
        batch locked, so the LIMIT never leaves one behind.
        """
        cols = ", ".join(conn.dialect.identifier_preparer.quote(c.name) for c in plan.pk)
        return f" ORDER BY {cols} LIMIT {int(n)}"

    def delete_keys_bound(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        """DELETE exactly these keys through the primary key (values as bound parameters)."""
        prep = conn.dialect.identifier_preparer
        cols = [prep.quote(c.name) for c in plan.pk]
        head = self.delete_head(conn, plan)
        step = max(1, self.max_params // len(cols))
        deleted = 0
        for i in range(0, len(keys), step):
            chunk = keys[i:i + step]
            params = {f"k{r}_{c}": v for r, key in enumerate(chunk) for c, v in enumerate(key)}
            if len(cols) == 1:
                cond = f"{cols[0]} IN ({', '.join(f':k{r}_0' for r in range(len(chunk)))})"
            else:
                rows = ", ".join("(" + ", ".join(f":k{r}_{c}" for c in range(len(cols))) + ")" for r in range(len(chunk)))
                cond = f"({', '.join(cols)}) IN ({rows})"
            deleted += conn.execute(sa.text(head + cond + self.delete_tail(conn, plan, len(chunk))), params).rowcount
        return deleted

    def keyset_after(self, pk: list[sa.Column]) -> sa.ColumnElement[bool]:
        if len(pk) == 1:
            return super().keyset_after(pk)
        # (a, b) > (x, y) written out, which MySQL's range optimizer handles everywhere.
        pk = [self.key_column(c) for c in pk]
        ors = []
        for i in range(len(pk)):
            eqs = [pk[j] == sa.bindparam(f"k{j}") for j in range(i)]
            ors.append(sa.and_(*eqs, pk[i] > sa.bindparam(f"k{i}")))
        return sa.or_(*ors)

    def value_fragment(self, expr: Any, col_type: sa.types.TypeEngine) -> sa.ColumnElement[str] | None:
        return mysql_value_fragment(expr, col_type)

    def concat(self, parts: Sequence[Any]) -> sa.ColumnElement[str]:
        return sa.type_coerce(sa.func.concat(*parts), sa.Text)

    def row_date_text_column(self, plan: TablePlan) -> sa.ColumnElement[str] | None:
        col = plan.date_column
        if isinstance(col.type, sa.DateTime):
            fmt = "%Y-%m-%d %H:%i:%s.%f"
        elif isinstance(col.type, sa.Date):
            fmt = "%Y-%m-%d 00:00:00.000000"
        else:
            return None
        # Naive DATETIME is UTC by convention; TIMESTAMP reads in the session's UTC (see prepare).
        return sa.case((_date_ok(col), sa.func.date_format(col, fmt)), else_=sa.null())

    def date_select_column(self, plan: TablePlan) -> Any:
        col = plan.columns[plan.date_idx]
        if isinstance(col.type, (sa.DateTime, sa.Date)):
            # Text, parsed by to_utc_datetime (C fromisoformat); zero dates stay unparseable (None), as before.
            return sa.cast(col, sa.CHAR).label(f"{col.name}__text")
        return col

    # PyMySQL parses every column of every row in Python: when the key is one integer and the
    # payload one SQL object, the server packs key, row date, date text and payload into one
    # tab-separated text column (none of them can hold a tab: JSON escapes it).
    def packed_column(self, plan: TablePlan) -> Any:
        if "mysql_packed" not in plan.extra:
            layout = self.layout(plan)
            expr = None
            if (len(plan.pk) == 1 and isinstance(plan.pk[0].type, sa.Integer) and self.fast_enabled
                    and layout.single_object is not None and layout.row_date_text is not None):
                items, tab, empty = layout.items, _q("\t"), _q("")
                expr = sa.type_coerce(sa.func.concat(
                    sa.cast(items[0], sa.CHAR), tab, sa.func.ifnull(items[layout.row_date_text], empty), tab,
                    sa.func.ifnull(items[layout.n_keys], empty), tab, sa.func.ifnull(items[layout.single_object], empty)),
                    sa.Text).label("packed")
            plan.extra["mysql_packed"] = expr
        return plan.extra["mysql_packed"]

    def server_row_exprs(self, plan: TablePlan) -> tuple[Any, Any] | None:
        """(payload, row date text) as SQL when the server writes a whole archive record of
        this table (one integer key, every column rendered by the server), else None.

        The payload is NULL for a row with a value the server cannot render (see
        :func:`mysql_value_fragment`); used by in-server moves (:mod:`.in_server`).
        """
        if not self.fast_enabled or len(plan.pk) != 1 or not isinstance(plan.pk[0].type, sa.Integer):
            return None
        layout = self.layout(plan)
        if layout.single_object is None or layout.row_date_text is None:
            return None
        # The date column itself: the server converts it to the archive's DATETIME as it does the
        # text (fractions cut the same way); a zero date leaves the payload NULL anyway.
        return layout.items[layout.single_object], plan.date_column

    def fetch_batch(self, conn: sa.Connection, plan: TablePlan, after: tuple | None, limit: int) -> Batch:
        packed = self.packed_column(plan)
        if packed is None:
            return super().fetch_batch(conn, plan, after, limit)
        key = "packed_first" if after is None else "packed_next"
        stmt = plan.extra.get(key)
        if stmt is None:
            stmt = plan.extra[key] = self.select_statement(plan, after is None, [packed])
        params: dict[str, Any] = {"batch_limit": limit}
        if after is not None:
            params["k0"] = after[0]
        keys: list[tuple] = []
        records: list[dict[str, Any]] = []
        exotic: list[int] = []
        for (text,) in conn.execute(stmt, params).all():
            k, row_date, raw_date, payload = text.split("\t", 3)
            if not payload:
                exotic.append(len(records))
            keys.append((int(k),))
            # The row date text is checked by the server itself (zero dates are NULL): usable as is.
            records.append({"source_pk": k, "payload": payload or None,
                            "row_date": row_date or to_utc_datetime(raw_date)})
        if not keys:
            return Batch([], None, [])
        if exotic:
            self.generic_payloads(conn, plan, [keys[i] for i in exotic], [records[i] for i in exotic])
        return Batch(keys, keys[-1], records)

    def one_of(self, column: Any, values: list[Any]) -> tuple[sa.ColumnElement[bool], dict[str, Any]] | None:
        # Integers written as literals: no per-value parameter escaping in Python.
        if not self.fast_enabled or not values or not all(type(v) is int for v in values):
            return None
        return column.op("IN")(sa.literal_column("(" + ",".join(map(str, values)) + ")")), {}

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        if not self.fast_enabled or len(plan.pk) != 1 or conn.dialect.driver != "pymysql" \
                or not all(type(k[0]) is int for k in keys):
            return self.delete_keys_bound(conn, plan, keys)
        # Integer keys written as literals: no per-key parameter escaping in Python.
        deleted = 0
        for i in range(0, len(keys), self.max_params):
            chunk = keys[i:i + self.max_params]
            deleted += self.delete_key_text(conn, plan, ",".join([str(k[0]) for k in chunk]), len(chunk))
        return deleted

    def delete_key_text(self, conn: sa.Connection, plan: TablePlan, keys: str, n: int) -> int:
        """DELETE the ``n`` integer keys of a one-column key given as one list text (``1,2,3``,
        checked to be integers by the caller)."""
        column = conn.dialect.identifier_preparer.quote(plan.pk[0].name)
        return execute_literal(conn, f"{self.delete_head(conn, plan)}{column} IN ({keys}){self.delete_tail(conn, plan, n)}",
                        "DELETE ... WHERE key IN (...)")

    def replica_lag(self, conn: sa.Connection) -> float | None:
        return signals.replica_lag(conn)

    def active_sessions(self, conn: sa.Connection) -> int | None:
        return signals.active_sessions(conn)
