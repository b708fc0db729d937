"""MySQL/MariaDB archive: multi-row upsert statements written as literals (PyMySQL).

One ``INSERT … VALUES (…),(…) … ON DUPLICATE KEY UPDATE`` per ~256 KB of rows,
the values written as SQL literals with the connection's escaping rules
(backslash escapes, or quote doubling under NO_BACKSLASH_ESCAPES); the portable
bound-parameter upsert on other drivers.
"""
from __future__ import annotations

import hashlib

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect

from ...payload_filter import PayloadReads
from ...schema import archived_rows
from ..base import ArchiveOps
from . import errors
from .capabilities import CAPABILITIES
from .statements import execute_literal

_NO_BACKSLASH_ESCAPES = 512  # pymysql.constants.SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES


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


class MySQLPayloadReads(PayloadReads):
    """A payload key read as a number with JSON_EXTRACT's own DECIMAL cast (65 digits, 20 after the point)."""

    def number(self, name: str) -> sa.ColumnElement[Any]:
        return archived_rows.c.payload[name].as_numeric(65, 20)


class MySQLArchiveOps(ArchiveOps):
    """MySQL/MariaDB archive: multi-row upsert statements written as literals (PyMySQL)."""

    capabilities = CAPABILITIES
    payload_reads = MySQLPayloadReads()

    max_statement_bytes = 1 << 18  # 256 KB: the server parses these faster than 1 MB ones (measured)

    def explain(self, exc: BaseException) -> str:
        return errors.reason(exc) or super().explain(exc)

    def upsert_statement(self) -> Any:
        insert = mysql_dialect.insert(archived_rows).values(**self.values())
        ins = insert.inserted
        return insert.on_duplicate_key_update(**{c: ins[c] for c in self.REPLACED})

    def datetime_param(self, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(timezone.utc).replace(tzinfo=None)

    def lock_name(self, conn: sa.Connection, table_name: str) -> str:
        # GET_LOCK names are server-wide and at most 64 characters: this database and the table, hashed.
        database = conn.execute(sa.text("SELECT DATABASE()")).scalar() or ""
        return "archiver:" + hashlib.sha256(f"{database}\0{table_name}".encode()).hexdigest()[:48]

    def try_lock(self, conn: sa.Connection, name: str) -> bool:
        return conn.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar() == 1

    def unlock(self, conn: sa.Connection, name: str) -> None:
        conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})

    def bound_idle_session(self, conn: sa.Connection, seconds: int) -> None:
        conn.exec_driver_sql(f"SET SESSION wait_timeout = {int(seconds)}")

    def upsert(self, conn: sa.Connection, table_name: str, records: list[dict[str, Any]],
               archived_at: datetime, run_id: int | None) -> int:
        if not records or not self.fast_enabled or conn.dialect.driver != "pymysql":
            return super().upsert(conn, table_name, records, archived_at, run_id)
        dbapi_conn = conn.connection.dbapi_connection
        bs = not (dbapi_conn.server_status & _NO_BACKSLASH_ESCAPES)
        tail = f",{_datetime_literal(archived_at)},{'NULL' if run_id is None else int(run_id)}"
        unlinked = tail + ",NULL,0)"  # a row archived by its own table's policy
        head = f"({_literal(table_name, bs)},"
        insert = ("INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at, run_id, "
                  "root_id, depth) VALUES ")
        if getattr(conn.dialect, "_requires_alias_for_on_duplicate_key", False):
            update = " AS new ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = new.{c}" for c in self.REPLACED)
        else:
            update = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in self.REPLACED)
        values: list[str] = []
        size = 0
        for r in records:
            root = r.get("root_id")
            v = (head + _literal(r["source_pk"], bs) + "," + _literal(r["payload"], bs) + ","
                 + _datetime_literal(r["row_date"])
                 + (unlinked if root is None else f"{tail},{int(root)},{int(r.get('depth', 0))})"))
            values.append(v)
            size += len(v) + 1
            if size >= self.max_statement_bytes:
                execute_literal(conn, insert + ",".join(values) + update)
                values, size = [], 0
        if values:
            execute_literal(conn, insert + ",".join(values) + update)
        return len(records)
