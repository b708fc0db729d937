"""COPY on psycopg2: the one helper both sides use, and COPY's text format."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import sqlalchemy as sa

from .watchdog import guarded


def run_copy(conn: sa.Connection, sql: str, data: Any, params: dict[str, Any] | None = None) -> int:
    """``COPY … FROM STDIN`` (``data`` is read) or ``COPY … TO STDOUT`` (``data`` is written) on
    the connection's psycopg2 cursor, ``params`` bound by psycopg2; returns the rows copied.
    DB-API errors come as SQLAlchemy's; a reader's own failure (``data.error``) as itself."""
    dbapi_conn = conn.connection.dbapi_connection
    error = conn.dialect.loaded_dbapi.Error
    try:
        deadline = getattr(conn.engine, "_archiver_pg_deadline", None)
        with dbapi_conn.cursor() as cur, guarded(dbapi_conn, deadline):
            cur.copy_expert(sql if params is None else cur.mogrify(sql, params).decode(), data, size=1 << 16)
            return cur.rowcount
    except error as exc:
        if getattr(data, "error", None) is not None:  # reading the data failed (source side): that error
            raise data.error from None
        raise sa.exc.DBAPIError.instance(sql, None, exc, error, dialect=conn.dialect) from exc


def copy_text(value: str) -> str:
    """A value in COPY's text format (backslash escapes)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value or "\r" in value or "\t" in value:
        value = value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return value


def copy_datetime(value: datetime | str | None) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):  # naive UTC text (see Batch)
        return value + "+00"
    return value.isoformat()


def _link(root_id: int | None) -> str:
    return "\\N" if root_id is None else str(int(root_id))


class CopyReader:
    """File-like COPY text for ``copy_expert``, made from record chunks as psycopg2 reads it.

    Each line: ``prefix``, source_pk, payload, row_date, ``suffix``, root_id, depth.
    """

    def __init__(self, chunks: Iterator[list[dict[str, Any]]], prefix: str, suffix: str) -> None:
        self.chunks, self.prefix, self.suffix = chunks, prefix, suffix
        self.count = 0
        self.error: BaseException | None = None  # raised by the chunks (the source side), not by COPY

    def read(self, size: int = -1) -> str:
        try:
            chunk = next(self.chunks, None)
        except BaseException as exc:  # psycopg2 would replace it with a COPY error: keep it
            self.error = exc
            raise
        if chunk is None:
            return ""
        self.count += len(chunk)
        p, s = self.prefix, self.suffix
        return "".join([f"{p}{copy_text(r['source_pk'])}\t{copy_text(r['payload'])}\t{copy_datetime(r['row_date'])}{s}"
                        f"\t{_link(r.get('root_id'))}\t{r.get('depth', 0)}\n" for r in chunk])

    readline = read
