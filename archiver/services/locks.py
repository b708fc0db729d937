"""The per-table lock as the services use it: one lock per table for archive, purge and restore
runs (engine/lease.py), and the domain error for a table another run holds."""
from __future__ import annotations

from flask import current_app

from ..engine.lease import Holder, TableLock
from ..errors import Conflict
from .source_db import archive_engine


class TableHeld(Conflict):
    """The table's lock is held by another run; ``holder`` (and ``details.holder``) say which."""

    def __init__(self, table_name: str, holder: Holder | None) -> None:
        self.table_name, self.holder = table_name, holder
        who = holder.describe() if holder is not None else "another run (its record is not written yet)"
        super().__init__(f"table '{table_name}' is held by {who}",
                         {"table_name": table_name, "holder": holder.as_dict() if holder else None},
                         code="table_held")


def table_lock(table_name: str) -> TableLock:
    """A (not yet acquired) lock on ``table_name`` with the configured heartbeat and staleness."""
    cfg = current_app.config
    return TableLock(archive_engine(), table_name, heartbeat_seconds=cfg["LOCK_HEARTBEAT_SECONDS"],
                     stale_seconds=cfg["LOCK_STALE_SECONDS"])
