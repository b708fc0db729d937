"""SQLite as the service's own store: init-db's write lock and table rebuilds during migrations."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa

from ...errors import SchemaLockBusy


@contextmanager
def schema_lock(conn: sa.Connection, wait_seconds: int) -> Iterator[None]:
    """The transaction begins IMMEDIATE: the database's write lock is the lock. BEGIN waits for it up
    to ``wait_seconds`` (the busy timeout, for that statement only), then SchemaLockBusy."""
    driver = conn.connection.driver_connection
    busy_ms = driver.execute("PRAGMA busy_timeout").fetchone()[0]
    driver.execute(f"PRAGMA busy_timeout = {int(wait_seconds * 1000)}")
    conn.execution_options(sqlite_begin="IMMEDIATE")
    try:
        transaction = conn.begin()
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorname", None) != "SQLITE_BUSY":
            raise
        raise SchemaLockBusy(f"the database stayed locked for {wait_seconds} s") from None
    finally:
        driver.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    with transaction:
        yield


@contextmanager
def foreign_keys_off(conn: sa.Connection) -> Iterator[None]:
    """Foreign keys off while migrating, on again afterwards.

    SQLite alters a table by copying it into a new one and dropping the old (Alembic's batch mode);
    with foreign keys on, dropping a referenced table (users) deletes the rows that reference it
    (table_permissions, ON DELETE CASCADE). The pragma only takes effect outside a transaction, so it
    is set on the driver connection before the migration's transaction begins; :func:`dangling`
    checks the keys before that transaction commits.
    """
    driver = conn.connection.driver_connection
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def dangling(conn: sa.Connection) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.exec_driver_sql("PRAGMA foreign_key_check").all()]
