"""Engines with the project's per-backend connection settings (the service, the CLI, the benchmark)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .backends import configure_engine


def make_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """create_engine with the backend's connection settings applied."""
    engine = sa.create_engine(url, **kwargs)
    configure_engine(engine)
    return engine


__all__ = ["configure_engine", "make_engine"]
