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

from .dialects import MySQLArchiveOps, MySQLSourceOps
from .fast_common import FastSourceOps
from .plan import TablePlan

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
    max_statement_bytes = 1 << 20

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


def _execute(conn: sa.Connection, sql: str) -> None:
    """Run literal SQL (no parameters, so no %-formatting) on the DB-API cursor."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        with conn.connection.dbapi_connection.cursor() as cur:
            cur.execute(sql)
    except error as exc:
        # The statement holds row data: the error names only its kind.
        raise sa.exc.DBAPIError.instance("INSERT INTO archived_rows ... VALUES ...", None, exc, error,
                                         dialect=conn.dialect) from exc


#: Registered by dialects._load_fast_paths: {is_source: {dialect name: class}}.
FAST_OPS = {True: {"mysql": FastMySQLSourceOps, "mariadb": FastMySQLSourceOps},
            False: {"mysql": FastMySQLArchiveOps, "mariadb": FastMySQLArchiveOps}}
