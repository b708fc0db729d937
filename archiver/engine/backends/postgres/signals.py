"""What a PostgreSQL server tells a throttle: replication lag and active sessions.

* **Replica lag**, on a standby: how far its replay is behind (0 once it has replayed all it
  received: an idle primary is not lag); on a primary: the largest ``replay_lag`` of
  ``pg_stat_replication`` (None with no standby). Reading other roles' rows of
  ``pg_stat_replication`` and ``pg_stat_activity`` needs ``pg_monitor`` (or a superuser):
  without it they are hidden and a throttle sees less than there is.
* **Active sessions**: client backends running a statement now, the asking one left out
  (gh-ost's ``Threads_running`` for PostgreSQL).
"""
from __future__ import annotations

import sqlalchemy as sa

REPLICA_LAG = sa.text(
    "SELECT CASE WHEN pg_is_in_recovery() THEN"
    " CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0"
    " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END"
    " ELSE (SELECT EXTRACT(EPOCH FROM max(replay_lag)) FROM pg_stat_replication) END")

ACTIVE_SESSIONS = sa.text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()")


def replica_lag(conn: sa.Connection) -> float | None:
    """Seconds behind (see the module docstring); None when not known."""
    value = conn.execute(REPLICA_LAG).scalar()
    return None if value is None else max(0.0, float(value))


def active_sessions(conn: sa.Connection) -> int:
    """Client sessions running a statement now, ``conn``'s own left out."""
    return int(conn.execute(ACTIVE_SESSIONS).scalar() or 0)
