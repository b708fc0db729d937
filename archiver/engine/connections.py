"""Engines with the project's per-backend connection settings (the service, the CLI, the benchmark)."""
from __future__ import annotations

from typing import Any, ContextManager

import sqlalchemy as sa

from .backends import ConnectionSettings, backend_of, configure_engine


def make_engine(url: str | sa.URL, settings: ConnectionSettings | None = None, **kwargs: Any) -> sa.Engine:
    """create_engine with the backend's connection settings (and timeouts) applied; connections
    are checked before use (a database restart is a reconnect, not a failure)."""
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    configure_engine(engine, settings)
    return engine


def writes_expected(engine: sa.Engine) -> ContextManager[None]:
    """The transactions this thread begins on ``engine`` inside it will write (see
    ``Backend.writes_expected``: SQLite takes its write lock at BEGIN; the others need nothing)."""
    return backend_of(engine).writes_expected(engine)


def stale_snapshot_writes(engine: sa.Engine) -> bool:
    """Whether a transaction on ``engine`` that read may still write after another connection
    committed (``Capabilities.stale_snapshot_writes``; SQLite: no)."""
    return backend_of(engine).capabilities.stale_snapshot_writes


def relax_commit(conn: sa.Connection) -> None:
    """The current transaction's commit need not wait for durable storage, where the database can
    say so (``Backend.relax_commit``: PostgreSQL)."""
    backend_of(conn.engine).relax_commit(conn)


def schema_lock(conn: sa.Connection, name: str, wait_seconds: int) -> ContextManager[Any]:
    """A transaction on ``conn`` exclusive between processes that change the schema
    (``Backend.schema_lock``); SchemaLockBusy after ``wait_seconds``."""
    return backend_of(conn.engine).schema_lock(conn, name, wait_seconds)


def altering_tables(conn: sa.Connection) -> ContextManager[None]:
    """Around a migration's transaction on ``conn`` (``Backend.altering_tables``)."""
    return backend_of(conn.engine).altering_tables(conn)


def dangling_references(conn: sa.Connection) -> list[tuple[Any, ...]]:
    """Rows whose foreign key points nowhere after a migration (``Backend.dangling_references``)."""
    return backend_of(conn.engine).dangling_references(conn)


def same_database(a: sa.Engine, b: sa.Engine) -> bool:
    """True when both engines open one database (SQLite: one file)."""
    return backend_of(a).same_database(a, b)


__all__ = ["ConnectionSettings", "altering_tables", "configure_engine", "dangling_references", "make_engine",
           "relax_commit", "same_database", "schema_lock", "stale_snapshot_writes", "writes_expected"]
