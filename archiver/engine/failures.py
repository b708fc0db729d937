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


def real_cause(exc: BaseException) -> BaseException:
    """The failure that started it all: cleaning up after a lost connection (a ROLLBACK or a close on
    the dead connection) raises errors of its own that hide the first one. Walks the exception's
    context chain and returns the first :class:`DatabaseError` (it names the database), else the
    earliest DB-API error, else ``exc``."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, DatabaseError):
            return e
    if isinstance(exc, sa.exc.DBAPIError):
        dbapi = [e for e in chain if isinstance(e, sa.exc.DBAPIError)]
        return dbapi[-1]
    return exc


def describe_error(exc: BaseException, side: str | None = None) -> str:
    """Short, safe text for a run record (no SQL, values or connection strings)."""
    exc = real_cause(exc)
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
