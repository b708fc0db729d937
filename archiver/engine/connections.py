"""Engine set-up shared by the service, the CLI and the benchmark."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event


def configure_sqlite(engine: sa.Engine) -> None:
    """Give pysqlite real transactions and sane concurrency settings.

    The driver's own transaction handling is turned off and SQLAlchemy emits
    ``BEGIN`` itself, so a transaction starts where SQLAlchemy says it does. A
    connection may ask for ``BEGIN IMMEDIATE`` (take the write lock up front)
    with ``execution_options(sqlite_begin="IMMEDIATE")``.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, "_archiver_sqlite", False):
        return
    is_file = engine.url.database not in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite test
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA foreign_keys = ON")
        if is_file:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every sqlite test
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            mode = "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    engine._archiver_sqlite = True  # type: ignore[attr-defined]


def make_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """create_engine with the project's per-dialect settings applied."""
    engine = sa.create_engine(url, **kwargs)
    configure_sqlite(engine)
    return engine
