"""SQLite connections: real transactions, a busy timeout, foreign keys on, WAL for files."""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import event

from ..base import ConnectionSettings


#: The engines whose transactions, begun in this context, take the write lock at BEGIN.
_WRITES_EXPECTED: ContextVar[frozenset[int]] = ContextVar("sqlite_writes_expected", default=frozenset())


@contextmanager
def writes_expected(engine: sa.Engine) -> Iterator[None]:
    """Transactions this context begins on ``engine`` start ``BEGIN IMMEDIATE`` (see
    ``Backend.writes_expected``): in WAL mode a transaction that read, then writes after another
    connection committed, fails at once with "database is locked" — the busy timeout does not
    apply — where one that holds the write lock from its BEGIN waits its turn instead."""
    token = _WRITES_EXPECTED.set(_WRITES_EXPECTED.get() | {id(engine)})
    try:
        yield
    finally:
        _WRITES_EXPECTED.reset(token)


#: WAL pages between automatic checkpoints in the service's own database (SQLite's default is
#: 1000, about 4 MB): a checkpoint copies the WAL into the file and syncs it, so with the default
#: every archive batch over 4 MB paid one, and index pages written by several batches were
#: copied once per batch. 16384 pages (64 MB with 4 KB pages) checkpoint about 16× less often.
OWNED_CHECKPOINT_PAGES = 16384


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
            if settings.owned:
                cur.execute(f"PRAGMA wal_autocheckpoint = {OWNED_CHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every sqlite test
        mode = conn.get_execution_options().get("sqlite_begin")
        if mode is None:
            mode = "IMMEDIATE" if id(conn.engine) in _WRITES_EXPECTED.get() else "DEFERRED"
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
