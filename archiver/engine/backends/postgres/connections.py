"""PostgreSQL connections: connect timeout, TCP keepalives and user timeout, and server-side
statement, lock and idle-in-transaction timeouts on every session (libpq parameters)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from ..base import ConnectionSettings


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
    options = [f"-c lock_timeout={settings.lock * 1000}"]
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
    params = connect_params(settings or ConnectionSettings())

    @event.listens_for(engine, "do_connect")
    def _on_connect(dialect, conn_rec, cargs, cparams):  # pragma: no cover - every PostgreSQL test
        for key, value in params.items():
            if key == "options":
                cparams["options"] = " ".join(filter(None, [str(cparams.get("options") or ""), str(value)]))
            else:
                cparams.setdefault(key, value)

    engine._archiver_pg = True  # type: ignore[attr-defined]
