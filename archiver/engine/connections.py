"""Engines with the project's per-backend connection settings (the service, the CLI, the benchmark)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .backends import ConnectionSettings, configure_engine


def make_engine(url: str | sa.URL, settings: ConnectionSettings | None = None, **kwargs: Any) -> sa.Engine:
    """create_engine with the backend's connection settings (and timeouts) applied; connections
    are checked before use (a database restart is a reconnect, not a failure)."""
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    configure_engine(engine, settings)
    return engine


__all__ = ["ConnectionSettings", "configure_engine", "make_engine"]
