"""The backend registry: one package per database, found by SQLAlchemy dialect name.

To add a database: write a package here (``base.Backend`` subclass with its
``Capabilities``, a ``SourceOps`` and an ``ArchiveOps``; see
``docs/architecture.md``) and add its dialect names to :data:`BACKENDS`.
Backend packages import :mod:`.base` and the shared helpers, never each other;
they are imported on first use.
"""
from __future__ import annotations

import importlib
import sys

import sqlalchemy as sa

from ..errors import EngineError
from .base import ArchiveOps, Backend, Capabilities, ConnectionSettings, SourceOps, generic_reason

#: SQLAlchemy dialect name -> backend package (under archiver.engine.backends).
BACKENDS: dict[str, str] = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
}

#: Dialects without a package: the portable protocol (base.Backend), one batch at a time, no archive.
_PORTABLE = Backend()


class UnsupportedDatabase(EngineError):
    def __init__(self, dialect_name: str) -> None:
        super().__init__(f"archive database dialect '{dialect_name}' is not supported")


def backend_for(dialect_name: str) -> Backend:
    """The backend of a dialect (the portable one for a dialect without its own package)."""
    module = BACKENDS.get(dialect_name)
    if module is None:
        return _PORTABLE
    return importlib.import_module(f"{__name__}.{module}").BACKEND


def backend_of(engine: sa.Engine) -> Backend:
    return backend_for(engine.dialect.name)


def source_ops_for(engine: sa.Engine) -> SourceOps:
    return backend_of(engine).source_ops(engine)


def archive_ops_for(engine: sa.Engine) -> ArchiveOps:
    backend = backend_of(engine)
    if backend is _PORTABLE:
        raise UnsupportedDatabase(engine.dialect.name)
    return backend.archive_ops(engine)


def configure_engine(engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
    """Apply the engine's backend settings (and ``settings``' timeouts, default
    :class:`ConnectionSettings`) to every connection it opens (idempotent)."""
    backend_of(engine).configure_engine(engine, settings or ConnectionSettings())


def explain(exc: BaseException) -> str:
    """A safe reason for any DB-API error: its backend's words and code, else its class."""
    orig = getattr(exc, "orig", exc)
    driver = type(orig).__module__.split(".", 1)[0]
    packages = sorted(set(BACKENDS.values()))
    # The error comes from a database in use, whose backend is loaded already: those are asked first,
    # so a SQLite error does not import the PostgreSQL and MySQL backends (and their dialects).
    loaded = [p for p in packages if f"{__name__}.{p}" in sys.modules]
    for module in loaded + [p for p in packages if p not in loaded]:
        backend = importlib.import_module(f"{__name__}.{module}").BACKEND
        if driver in backend.drivers:
            return backend.explain(exc) or generic_reason(exc)
    return generic_reason(exc)


__all__ = ["ArchiveOps", "BACKENDS", "Backend", "Capabilities", "ConnectionSettings", "SourceOps", "UnsupportedDatabase",
           "archive_ops_for", "backend_for", "backend_of", "configure_engine", "explain", "source_ops_for"]
