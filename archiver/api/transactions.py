"""Requests that change something say so before their first query (see
``services.source_db.archive_writes_expected``): on a SQLite archive their transactions take the
write lock at BEGIN and wait their turn behind a run's batch, instead of failing with "database is
locked" when a batch commits between the request's read and its write."""
from __future__ import annotations

from contextlib import ExitStack

from flask import Flask, g, request

from ..services.source_db import archive_writes_expected

#: Methods that write (GET, HEAD and OPTIONS only read).
WRITING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def register_write_intent(app: Flask) -> None:
    @app.before_request
    def _expect_writes() -> None:
        if request.method in WRITING_METHODS:
            stack = ExitStack()
            stack.enter_context(archive_writes_expected())
            g.archive_writes = stack

    @app.teardown_request
    def _writes_done(_exc: BaseException | None) -> None:
        stack = g.pop("archive_writes", None)
        if stack is not None:
            stack.close()
