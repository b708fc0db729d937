"""Turn any failure into a short, safe message naming the database that failed."""
from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa

from .backends import explain
from .criteria import CriteriaError
from .errors import DatabaseError, EngineError


@contextlib.contextmanager
def db_side(side: str) -> Iterator[None]:
    """Re-raise DB-API errors as DatabaseError naming the side, with a safe reason."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(side, explain(exc)) from exc


def describe_error(exc: BaseException, side: str | None = None) -> str:
    """Short, safe text for a run record (no SQL, values or connection strings)."""
    if isinstance(exc, EngineError):
        return str(exc)[:500]
    if isinstance(exc, sa.exc.DBAPIError):
        prefix = f"{side} database error" if side else "database error"
        return f"{prefix}: {explain(exc)}"
    if isinstance(exc, sa.exc.NoSuchTableError):
        return f"source table '{exc.args[0] if exc.args else '?'}' does not exist"
    # CriteriaError messages are safe by contract (see engine/criteria.py).
    if isinstance(exc, CriteriaError):
        return f"invalid custom_criteria: {str(exc)[:300]}"
    return f"internal error ({type(exc).__name__})"
