"""PostgreSQL connections: connect timeout, TCP keepalives and user timeout, and server-side
statement, lock and idle-in-transaction timeouts on every session (libpq parameters)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from ..base import ConnectionSettings
from . import watchdog


def connect_params(settings: ConnectionSettings) -> dict[str, object]:
    """libpq connection parameters for ``settings`` (``options`` to be appended to the URL's own)."""
    net = settings.network
    params: dict[str, object] = {
        "connect_timeout": settings.connect,
        # A peer that stops answering: keepalive probes after net/2 s idle, 3 more net/6 s apart;
        # unacknowledged data (a blackholed write) gives up after net s (TCP_USER_TIMEOUT).
        "keepalives": 1, "keepalives_idle": max(1, net // 2), "keepalives_interval": max(1, net // 6),
        "keepalives_count": 3, "tcp_user_timeout": net * 1000,
    }
    # The server side of the same: a client that vanished ends its session (its advisory table
    # lock and its row locks with it) within about the network timeout.
    options = [f"-c lock_timeout={settings.lock * 1000}", f"-c tcp_keepalives_idle={max(1, net // 2)}",
               f"-c tcp_keepalives_interval={max(1, net // 6)}", "-c tcp_keepalives_count=3",
               f"-c tcp_user_timeout={net * 1000}"]
    if settings.statement:
        options.append(f"-c statement_timeout={settings.statement * 1000}")
    if settings.idle_in_transaction:
        options.append(f"-c idle_in_transaction_session_timeout={settings.idle_in_transaction * 1000}")
    params["options"] = " ".join(options)
    return params


def configure_engine(engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
    """Give every new connection of ``engine`` the timeouts of ``settings`` (idempotent)."""
    if getattr(engine, "_archiver_pg", False):
        return
    settings = settings or ConnectionSettings()
    params = connect_params(settings)
    deadline = deadline_seconds(settings)

    @event.listens_for(engine, "do_connect")
    def _on_connect(dialect, conn_rec, cargs, cparams):  # pragma: no cover - every PostgreSQL test
        for key, value in params.items():
            if key == "options":
                # Ours first: a setting the URL's own options name wins (the last -c counts).
                cparams["options"] = " ".join(filter(None, [str(value), str(cparams.get("options") or "")]))
            else:
                cparams.setdefault(key, value)

    @event.listens_for(engine, "before_cursor_execute")
    def _watch(conn, cursor, statement, parameters, context, executemany):  # pragma: no cover
        if context is not None:
            context._archiver_watch = watchdog.watch(conn.connection.dbapi_connection, deadline)

    @event.listens_for(engine, "after_cursor_execute")
    def _unwatch(conn, cursor, statement, parameters, context, executemany):  # pragma: no cover
        watchdog.unwatch(getattr(context, "_archiver_watch", None))

    @event.listens_for(engine, "handle_error")
    def _unwatch_error(ctx):  # pragma: no cover
        watchdog.unwatch(getattr(ctx.execution_context, "_archiver_watch", None))

    # The pool's check before use (pool_pre_ping) pings on the driver's connection, outside the
    # execute events: guard it the same way (a silent server would hang every checkout).
    ping = engine.dialect.do_ping

    def guarded_ping(dbapi_connection):  # pragma: no cover - every PostgreSQL checkout
        with watchdog.guarded(dbapi_connection, deadline):
            return ping(dbapi_connection)

    engine.dialect.do_ping = guarded_ping  # type: ignore[method-assign]
    engine._archiver_pg = True  # type: ignore[attr-defined]
    engine._archiver_pg_deadline = deadline  # type: ignore[attr-defined]


def deadline_seconds(settings: ConnectionSettings) -> float:
    """How long a statement may go unanswered before its connection is given up (watchdog)."""
    return float((settings.statement or 3600) + settings.network)
