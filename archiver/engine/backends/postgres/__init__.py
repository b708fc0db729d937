"""PostgreSQL backend: row locks, server-built payloads, COPY in both directions, advisory locks.

Reads alone: :mod:`.source` (batch SELECT … FOR UPDATE with payloads built by
the server, streamed; array DELETE; COPY out), :mod:`.archive` (COPY into
``archived_rows``, staged upsert, purge by ctid), :mod:`.copy_pipe` (PostgreSQL →
PostgreSQL batches COPY to COPY), :mod:`.copy` (COPY on psycopg2),
:mod:`.errors` (SQLSTATEs in plain words), :mod:`.store` (init-db's advisory lock,
relaxed commits of audit records).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, ContextManager

import sqlalchemy as sa

from ...pipeline import Slot
from ...plan import TablePlan
from ..base import ConnectionSettings, ArchiveOps, Backend, Mover, SourceOps
from . import errors, store
from .connections import configure_engine
from .archive import PostgresArchiveOps
from .copy_pipe import CopyPipe
from .capabilities import CAPABILITIES
from .source import PostgresSourceOps


class PostgresBackend(Backend):
    name = "postgresql"
    capabilities = CAPABILITIES
    source_ops = PostgresSourceOps
    archive_ops = PostgresArchiveOps
    drivers = ("psycopg2",)

    def configure_engine(self, engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
        configure_engine(engine, settings)

    def explain(self, exc: BaseException) -> str | None:
        return errors.reason(exc)

    def schema_lock(self, conn: sa.Connection, name: str, wait_seconds: int) -> ContextManager[Any]:
        return store.schema_lock(conn, name, wait_seconds)

    def relax_commit(self, conn: sa.Connection) -> None:
        store.relax_commit(conn)

    def open_copy_pipe(self, sops: SourceOps, aops: ArchiveOps, plan: TablePlan, slots: list[Slot],
                       aconn: sa.Connection, *, now: datetime, run_id: int | None,
                       checkpoint: Callable[[str], None]) -> Mover | None:
        if not (isinstance(sops, PostgresSourceOps) and isinstance(aops, PostgresArchiveOps)):
            return None
        if not CopyPipe.usable(sops, aops, plan, aconn, now):
            return None
        return CopyPipe(sops, aops, plan, slots, aconn, now=now, run_id=run_id, hook=checkpoint)


BACKEND = PostgresBackend()

__all__ = ["BACKEND", "CAPABILITIES", "PostgresArchiveOps", "PostgresBackend", "PostgresSourceOps"]
