"""What PostgreSQL can do, declared as data (see ``base.Capabilities``)."""
from __future__ import annotations

from ..base import Capabilities

#: PostgreSQL: row locks, JSON built by the server, server-side cursors, COPY, SKIP LOCKED,
#: session advisory locks; real date types;
#: replication lag and active sessions for a throttle.
CAPABILITIES = Capabilities(row_locks=True, server_json=True, streaming_reads=True, copy=True,
                            in_server_moves=False, skip_locked=True, advisory_locks=True, text_dates=False,
                            max_bind_params=65535,
                            signals=frozenset({"replica_lag", "active_sessions"}))
