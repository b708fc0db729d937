"""Engines with the project's per-backend connection settings (the service, the CLI, the benchmark)."""
from __future__ import annotations

from typing import Any, ContextManager

import sqlalchemy as sa

from .backends import ConnectionSettings, backend_of, configure_engine


def make_engine(url: str | sa.URL, settings: ConnectionSettings | None = None, **kwargs: Any) -> sa.Engine:
    """create_engine with the backend's connection settings (and timeouts) applied; connections
    are checked before use (a database restart is a reconnect, not a failure)."""
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    configure_engine(engine, settings)
    return engine


def writes_expected(engine: sa.Engine) -> ContextManager[None]:
    """The transactions this thread begins on ``engine`` inside it will write (see
    ``Backend.writes_expected``: SQLite takes its write lock at BEGIN; the others need nothing)."""
    return backend_of(engine).writes_expected(engine)


def same_database(a: sa.Engine, b: sa.Engine) -> bool:
    """True when both engines open one database (SQLite: one file)."""
    return backend_of(a).same_database(a, b)


__all__ = ["ConnectionSettings", "configure_engine", "make_engine", "same_database", "writes_expected"]
