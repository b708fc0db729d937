"""Statement helpers of the MySQL/MariaDB backend shared by its source, archive and in-server moves."""
from __future__ import annotations

import sqlalchemy as sa


def force_primary_key(stmt: sa.Select, table: sa.Table) -> sa.Select:
    """``stmt`` reading ``table`` through its primary key (MySQL/MariaDB index hint)."""
    for name in ("mysql", "mariadb"):
        stmt = stmt.with_hint(table, "FORCE INDEX (PRIMARY)", dialect_name=name)
    return stmt


def execute_literal(conn: sa.Connection, sql: str, label: str = "INSERT INTO archived_rows ... VALUES ...") -> int:
    """Run literal SQL (no parameters, so no %-formatting) on the DB-API cursor; the row count."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        with conn.connection.dbapi_connection.cursor() as cur:
            return cur.execute(sql)
    except error as exc:
        # The statement holds row data: the error carries only ``label``.
        raise sa.exc.DBAPIError.instance(label, None, exc, error, dialect=conn.dialect) from exc
