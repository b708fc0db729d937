"""PostgreSQL as the service's own store: init-db's advisory lock, relaxed commits of audit records."""
from __future__ import annotations

import time
import zlib
from contextlib import contextmanager
from typing import Iterator

import sqlalchemy as sa

from ...errors import SchemaLockBusy


#: How often a waiting schema change tries the lock again.
_RETRY_SECONDS = 0.2


@contextmanager
def schema_lock(conn: sa.Connection, name: str, wait_seconds: int) -> Iterator[None]:
    """A transaction-level advisory lock (key: the CRC-32 of ``name``), taken first in the transaction
    and released by its end; tried again until ``wait_seconds`` have passed, then SchemaLockBusy."""
    key = zlib.crc32(name.encode())
    deadline = time.monotonic() + wait_seconds
    with conn.begin():
        while not conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar():
            if time.monotonic() >= deadline:
                raise SchemaLockBusy(f"the advisory lock {key} stayed held for {wait_seconds} s")
            time.sleep(_RETRY_SECONDS)
        yield


#: This transaction's commit does not wait for the WAL flush.
SYNC_OFF = "SET LOCAL synchronous_commit TO OFF"


def relax_commit(conn: sa.Connection) -> None:
    conn.exec_driver_sql(SYNC_OFF)
