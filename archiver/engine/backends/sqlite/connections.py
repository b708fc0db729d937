"""SQLite connections: real transactions, a busy timeout, foreign keys on, WAL for files."""
from __future__ import annotations

import os
from typing import Callable

import sqlalchemy as sa
from sqlalchemy import event

from ..base import ConnectionSettings


def configure_engine(engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
    """Give pysqlite real transactions and sane concurrency settings.

    The driver's own transaction handling is turned off and SQLAlchemy emits
    ``BEGIN`` itself, so a transaction starts where SQLAlchemy says it does. A
    connection may ask for ``BEGIN IMMEDIATE`` (take the write lock up front)
    with ``execution_options(sqlite_begin="IMMEDIATE")``. Foreign keys are
    enforced on every connection, whatever the application owning the file does.
    """
    if getattr(engine, "_archiver_sqlite", False):
        return
    settings = settings or ConnectionSettings()
    busy_ms = int(settings.lock * 1000)  # how long a writer waits for the write lock
    is_file = engine.url.database not in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite test
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
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


def same_file(a: sa.Engine, b: sa.Engine) -> bool:
    """True when both engines are the same SQLite database file (one writer at a time)."""
    da, db_ = a.url.database, b.url.database
    if not da or not db_ or da == ":memory:" or db_ == ":memory:":
        return False
    return os.path.realpath(da) == os.path.realpath(db_)


def pragmas(conn: sa.Connection, **values: int) -> Callable[[], None]:
    """Set integer PRAGMAs on a SQLite connection for a run; returns what puts the old values back.

    Run on the driver's connection, outside any transaction (SQLite refuses
    some PRAGMAs inside one).
    """
    dbapi = conn.connection.dbapi_connection
    before = {name: dbapi.execute(f"PRAGMA {name}").fetchone()[0] for name in values}
    for name, value in values.items():
        dbapi.execute(f"PRAGMA {name} = {int(value)}")

    def restore() -> None:
        conn.rollback()
        raw = conn.connection.dbapi_connection
        for name, value in before.items():
            raw.execute(f"PRAGMA {name} = {int(value)}")

    return restore
