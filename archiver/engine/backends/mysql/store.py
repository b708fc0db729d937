"""MySQL/MariaDB as the service's own store: init-db's named lock (DDL commits on its own here)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import sqlalchemy as sa

from ...errors import SchemaLockBusy


@contextmanager
def schema_lock(conn: sa.Connection, name: str, wait_seconds: int) -> Iterator[None]:
    """A named lock per database (``GET_LOCK``), held across the transaction because each DDL
    statement commits; SchemaLockBusy when another session holds it for ``wait_seconds``."""
    database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
    lock = f"{name.replace(' ', '.')}.{database}"[:64]  # "archiver.init-db.<database>", as before
    got = conn.execute(sa.text("SELECT GET_LOCK(:n, :w)"), {"n": lock, "w": wait_seconds}).scalar()
    conn.commit()
    if got != 1:
        raise SchemaLockBusy(f"the lock {lock!r} stayed held for {wait_seconds} s")
    try:
        with conn.begin():
            yield
    finally:
        conn.rollback()
        conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": lock})
        conn.commit()
