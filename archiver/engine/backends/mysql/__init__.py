"""MySQL/MariaDB backend: InnoDB row locks, server-built payloads, in-server moves, GET_LOCK.

Reads alone: :mod:`.source` (batch SELECT … FOR UPDATE through the primary key,
payloads built by the server, key-list DELETEs), :mod:`.archive` (literal
multi-row upserts), :mod:`.in_server` (a source and archive on one MariaDB
server: INSERT … SELECT + DELETE per batch), :mod:`.statements` (index hint,
literal SQL), :mod:`.errors` (error numbers in plain words), :mod:`.store` (init-db's
named lock).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, ContextManager

import sqlalchemy as sa

from ...plan import TablePlan
from ..base import ConnectionSettings, Backend, Mover, SourceOps
from . import errors, store
from .connections import configure_engine
from .archive import MySQLArchiveOps
from .in_server import open_in_server_move
from .capabilities import CAPABILITIES
from .source import MySQLSourceOps


class MySQLBackend(Backend):
    name = "mysql"
    capabilities = CAPABILITIES
    source_ops = MySQLSourceOps
    archive_ops = MySQLArchiveOps
    drivers = ("pymysql", "MySQLdb")

    def configure_engine(self, engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
        configure_engine(engine, settings)

    def explain(self, exc: BaseException) -> str | None:
        return errors.reason(exc)

    def schema_lock(self, conn: sa.Connection, name: str, wait_seconds: int) -> ContextManager[Any]:
        return store.schema_lock(conn, name, wait_seconds)

    def open_in_server_move(self, sops: SourceOps, plan: TablePlan, sconn: sa.Connection,
                            aconn: sa.Connection, archive: sa.Engine, *, now: datetime, run_id: int | None,
                            checkpoint: Callable[[str], None], overlapped: bool) -> Mover | None:
        # Its batches overlap on two connections: not for tables whose batches may not.
        if not overlapped or not isinstance(sops, MySQLSourceOps):
            return None
        return open_in_server_move(sops, plan, sconn, aconn, archive, now=now, run_id=run_id, checkpoint=checkpoint)


BACKEND = MySQLBackend()

__all__ = ["BACKEND", "CAPABILITIES", "MySQLArchiveOps", "MySQLBackend", "MySQLSourceOps"]
