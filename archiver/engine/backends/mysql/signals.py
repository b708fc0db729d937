"""What a MariaDB/MySQL server tells a throttle: replication lag and running threads.

* **Replica lag**: ``Seconds_Behind_Master`` (``…_Source`` on MySQL 8) of the server asked,
  the largest over MariaDB's named connections (``SHOW ALL SLAVES STATUS``). A primary has no
  such row (None: give the throttle a replica to ask, as pt-archiver's ``--check-slave-lag``).
  A configured replica that does not replicate (its SQL or IO thread stopped) shows NULL:
  that is infinite lag, and the run waits (as pt-archiver does), never archives blind.
  Needs ``REPLICA MONITOR`` / ``REPLICATION CLIENT``.
* **Active sessions**: ``Threads_running`` less the asking thread (gh-ost's ``--max-load``).
"""
from __future__ import annotations

import math

import sqlalchemy as sa

_LAG_COLUMNS = ("Seconds_Behind_Master", "Seconds_Behind_Source")


def _status_rows(conn: sa.Connection) -> list[dict]:
    if conn.dialect.is_mariadb:  # type: ignore[attr-defined]
        statement = "SHOW ALL SLAVES STATUS"  # every named connection (multi-source)
    elif conn.dialect.server_version_info >= (8, 0, 22):
        statement = "SHOW REPLICA STATUS"
    else:
        statement = "SHOW SLAVE STATUS"
    return [dict(row._mapping) for row in conn.exec_driver_sql(statement)]


def replica_lag(conn: sa.Connection) -> float | None:
    """Seconds behind (see the module docstring): None on a primary, ``inf`` when not replicating."""
    lags: list[float] = []
    for row in _status_rows(conn):
        column = next((c for c in _LAG_COLUMNS if c in row), None)
        value = row.get(column) if column else None
        lags.append(math.inf if value is None else float(value))
    return max(lags) if lags else None


def active_sessions(conn: sa.Connection) -> int:
    """Threads running a statement now, the asking one left out."""
    row = conn.exec_driver_sql("SHOW GLOBAL STATUS LIKE 'Threads_running'").first()
    return max(0, int(row[1]) - 1) if row is not None else 0
