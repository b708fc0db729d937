"""What SQLite can do, declared as data (see ``base.Capabilities``)."""
from __future__ import annotations

from ..base import Capabilities

#: SQLite: one writer at a time (no row locks), JSON built by json_object(), no date type; a source file
#: attached to the archive connection moves batches with INSERT … SELECT (in-server moves).
CAPABILITIES = Capabilities(row_locks=False, server_json=True, streaming_reads=False, copy=False,
                            in_server_moves=True, skip_locked=False, advisory_locks=False, text_dates=True,
                            max_bind_params=32766, stale_snapshot_writes=False)
