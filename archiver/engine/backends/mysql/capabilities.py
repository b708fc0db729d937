"""What MySQL/MariaDB can do, declared as data (see ``base.Capabilities``)."""
from __future__ import annotations

from ..base import Capabilities

#: MySQL/MariaDB (InnoDB): row locks, JSON built by the server, in-server moves between two
#: databases of one server, SKIP LOCKED (MariaDB 10.6+, MySQL 8), GET_LOCK; real date types;
#: replication lag and running threads for a throttle. InnoDB checks a foreign key row by row.
CAPABILITIES = Capabilities(row_locks=True, server_json=True, streaming_reads=False, copy=False,
                            in_server_moves=True, skip_locked=True, advisory_locks=True, text_dates=False,
                            max_bind_params=65535,
                            signals=frozenset({"replica_lag", "active_sessions"}), statement_key_checks=False)
