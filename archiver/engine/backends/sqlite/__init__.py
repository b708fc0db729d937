"""SQLite backend: one writer at a time, text dates, payloads built by ``json_object()``.

Reads alone: :mod:`.source` (batch SELECT under BEGIN IMMEDIATE, server-built
payloads, the JSON-array DELETE), :mod:`.in_server` (the source file attached to
the archive connection: INSERT … SELECT + DELETE per batch), :mod:`.archive` (driver-level upsert,
synced commits during a run), :mod:`.connections` (pragmas every connection
gets), :mod:`.types` (lenient date types), :mod:`.errors` (error names),
:mod:`.store` (init-db's write lock, foreign keys during table rebuilds).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, ContextManager

import sqlalchemy as sa

from ...plan import TablePlan
from ..base import Backend, ConnectionSettings, Mover, SourceOps
from . import errors, store
from .archive import SQLiteArchiveOps
from .connections import configure_engine, same_file, writes_expected
from .capabilities import CAPABILITIES
from .in_server import open_in_server_move
from .source import SQLiteSourceOps


class SQLiteBackend(Backend):
    name = "sqlite"
    capabilities = CAPABILITIES
    source_ops = SQLiteSourceOps
    archive_ops = SQLiteArchiveOps
    drivers = ("sqlite3",)

    def configure_engine(self, engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
        configure_engine(engine, settings)

    def explain(self, exc: BaseException) -> str | None:
        return errors.reason(exc)

    def same_database(self, a: sa.Engine, b: sa.Engine) -> bool:
        return same_file(a, b)

    def writes_expected(self, engine: sa.Engine) -> ContextManager[None]:
        return writes_expected(engine)

    def schema_lock(self, conn: sa.Connection, name: str, wait_seconds: int) -> ContextManager[Any]:
        return store.schema_lock(conn, wait_seconds)

    def altering_tables(self, conn: sa.Connection) -> ContextManager[None]:
        return store.foreign_keys_off(conn)

    def dangling_references(self, conn: sa.Connection) -> list[tuple[Any, ...]]:
        return store.dangling(conn)

    def open_in_server_move(self, sops: SourceOps, plan: TablePlan, sconn: sa.Connection,
                            aconn: sa.Connection, archive: sa.Engine, *, now: datetime, run_id: int | None,
                            checkpoint: Callable[[str], None], overlapped: bool) -> Mover | None:
        if not isinstance(sops, SQLiteSourceOps) or same_file(sconn.engine, archive):
            return None
        return open_in_server_move(sops, plan, sconn, aconn, now=now, run_id=run_id, checkpoint=checkpoint)


BACKEND = SQLiteBackend()

__all__ = ["BACKEND", "CAPABILITIES", "SQLiteArchiveOps", "SQLiteBackend", "SQLiteSourceOps"]
