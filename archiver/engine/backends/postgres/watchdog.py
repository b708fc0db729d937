"""A client-side deadline for PostgreSQL statements: the answer to a server that went silent.

The server bounds every statement (``statement_timeout``) and TCP keepalives plus
``tcp_user_timeout`` notice a peer that vanished from the network. Neither helps when
the path still acknowledges packets but never answers (a hung middlebox, a frozen
server, a proxy that swallows traffic): libpq would wait for ever. While a statement
runs, its connection is registered here with a deadline (the statement timeout plus
the network timeout, after which the server must have answered one way or the
other); past it, a watchdog thread shuts the connection's socket down, so the
waiting call fails at once with a connection error and the run fails naming the
database instead of hanging while it holds locks.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from typing import Any, Iterator

log = logging.getLogger(__name__)

_lock = threading.Lock()
_watched: dict[int, tuple[float, Any]] = {}  # token -> (deadline, psycopg2 connection)
_tokens = itertools.count(1)
_thread: threading.Thread | None = None


def _run() -> None:
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        with _lock:
            due = [(t, c) for t, (d, c) in _watched.items() if d <= now]
            for token, _ in due:
                _watched.pop(token, None)
        for _token, conn in due:
            _cut(conn)


def _cut(conn: Any) -> None:
    try:
        if conn.closed:
            return
        sock = socket.socket(fileno=__import__("os").dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
        log.error("a PostgreSQL statement got no answer within its deadline: connection shut down")
    except Exception:  # noqa: BLE001 - already closed: nothing to do
        pass


def watch(conn: Any, seconds: float) -> int:
    """Start watching ``conn`` (a psycopg2 connection) for ``seconds``; returns a token for :func:`unwatch`."""
    global _thread
    token = next(_tokens)
    with _lock:
        _watched[token] = (time.monotonic() + seconds, conn)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="pg-statement-watchdog", daemon=True)
            _thread.start()
    return token


def unwatch(token: int | None) -> None:
    if token is not None:
        with _lock:
            _watched.pop(token, None)


@contextlib.contextmanager
def guarded(conn: Any, seconds: float | None) -> Iterator[None]:
    """Watch ``conn`` while the block runs (no deadline when ``seconds`` is None)."""
    token = watch(conn, seconds) if seconds else None
    try:
        yield
    finally:
        unwatch(token)
