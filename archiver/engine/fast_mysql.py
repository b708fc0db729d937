"""MySQL/MariaDB fast path: payloads built by the server, literal multi-row upsert.

Source (:class:`FastMySQLSourceOps`): the batch SELECT … FOR UPDATE returns
each row's payload text (see :mod:`.fast_common`); rendered by the server:

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

Archive (:class:`FastMySQLArchiveOps`, PyMySQL only): one
``INSERT … VALUES (…),(…) … ON DUPLICATE KEY UPDATE`` per ~1 MB of rows, the
values written as SQL literals with the connection's escaping rules
(backslash escapes, or quote doubling under NO_BACKSLASH_ESCAPES).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from .dialects import Batch, MySQLArchiveOps, MySQLSourceOps
from .fast_common import FastSourceOps
from .plan import TablePlan
from .rowcodec import to_utc_datetime

_NO_BACKSLASH_ESCAPES = 512  # pymysql.constants.SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES


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


class FastMySQLSourceOps(FastSourceOps, MySQLSourceOps):
    """MySQL/MariaDB source with payloads built by the server."""

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
    def _packed(self, plan: TablePlan) -> Any:
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
        packed = self._packed(plan)
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
            self._generic_payloads(conn, plan, [keys[i] for i in exotic], [records[i] for i in exotic])
        return Batch(keys, keys[-1], records)

    def delete_keys(self, conn: sa.Connection, plan: TablePlan, keys: list[tuple]) -> int:
        if not self.fast_enabled or len(plan.pk) != 1 or conn.dialect.driver != "pymysql" \
                or not all(type(k[0]) is int for k in keys):
            return super().delete_keys(conn, plan, keys)
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
        return _execute(conn, f"{self.delete_head(conn, plan)}{column} IN ({keys}){self.delete_tail(conn, plan, n)}",
                        "DELETE ... WHERE key IN (...)")


def _literal(value: str, backslash: bool) -> str:
    if backslash:
        if "\\" in value:
            value = value.replace("\\", "\\\\")
        if "'" in value:
            value = value.replace("'", "\\'")
        if "\0" in value:
            value = value.replace("\0", "\\0")
        return "'" + value + "'"
    return "'" + value.replace("'", "''") + "'"


def _datetime_literal(value: datetime | str | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):  # naive UTC text (see Batch)
        return "'" + value + "'"
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return "'" + value.isoformat(" ", "microseconds") + "'"


class FastMySQLArchiveOps(MySQLArchiveOps):
    """MySQL/MariaDB archive: multi-row upsert statements written as literals (PyMySQL)."""

    fast_enabled = True
    max_statement_bytes = 1 << 18  # 256 KB: the server parses these faster than 1 MB ones (measured)

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        if not records or not self.fast_enabled or conn.dialect.driver != "pymysql":
            return super().upsert(conn, table_name, records, archived_at, run_id)
        dbapi_conn = conn.connection.dbapi_connection
        bs = not (dbapi_conn.server_status & _NO_BACKSLASH_ESCAPES)
        tail = f",{_datetime_literal(archived_at)},{'NULL' if run_id is None else int(run_id)})"
        head = f"({_literal(table_name, bs)},"
        if getattr(conn.dialect, "_requires_alias_for_on_duplicate_key", False):
            insert = "INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id) VALUES "
            update = (" AS new ON DUPLICATE KEY UPDATE payload = new.payload, row_date = new.row_date, "
                      "archived_at = new.archived_at, run_id = new.run_id")
        else:
            insert = "INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id) VALUES "
            update = (" ON DUPLICATE KEY UPDATE payload = VALUES(payload), row_date = VALUES(row_date), "
                      "archived_at = VALUES(archived_at), run_id = VALUES(run_id)")
        values: list[str] = []
        size = 0
        for r in records:
            v = (head + _literal(r["source_pk"], bs) + "," + _literal(r["payload"], bs) + ","
                 + _datetime_literal(r["row_date"]) + tail)
            values.append(v)
            size += len(v) + 1
            if size >= self.max_statement_bytes:
                _execute(conn, insert + ",".join(values) + update)
                values, size = [], 0
        if values:
            _execute(conn, insert + ",".join(values) + update)
        return len(records)


def _execute(conn: sa.Connection, sql: str, label: str = "INSERT INTO archived_rows ... VALUES ...") -> int:
    """Run literal SQL (no parameters, so no %-formatting) on the DB-API cursor; the row count."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        with conn.connection.dbapi_connection.cursor() as cur:
            return cur.execute(sql)
    except error as exc:
        # The statement holds row data: the error carries only ``label``.
        raise sa.exc.DBAPIError.instance(label, None, exc, error, dialect=conn.dialect) from exc


#: Registered by dialects._load_fast_paths: {is_source: {dialect name: class}}.
FAST_OPS = {True: {"mysql": FastMySQLSourceOps, "mariadb": FastMySQLSourceOps},
            False: {"mysql": FastMySQLArchiveOps, "mariadb": FastMySQLArchiveOps}}
