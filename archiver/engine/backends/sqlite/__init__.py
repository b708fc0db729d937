"""SQLite backend: one writer at a time, text dates, payloads built by ``json_object()``.

Reads alone: :mod:`.source` (batch SELECT under BEGIN IMMEDIATE, server-built
payloads, the JSON-array DELETE), :mod:`.archive` (driver-level upsert,
synced commits during a run), :mod:`.connections` (pragmas every connection
gets), :mod:`.types` (lenient date types), :mod:`.errors` (error names).
"""
from __future__ import annotations

import sqlalchemy as sa

from ..base import Backend, ConnectionSettings
from . import errors
from .archive import SQLiteArchiveOps
from .connections import configure_engine, same_file
from .capabilities import CAPABILITIES
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


BACKEND = SQLiteBackend()

__all__ = ["BACKEND", "CAPABILITIES", "SQLiteArchiveOps", "SQLiteBackend", "SQLiteSourceOps"]
