"""MySQL/MariaDB connections: connect, read and write timeouts on the socket (PyMySQL), and the
server's lock wait, statement and idle-transaction timeouts on every session."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from ..base import ConnectionSettings


def configure_engine(engine: sa.Engine, settings: ConnectionSettings | None = None) -> None:
    """Give every new connection of ``engine`` the timeouts of ``settings`` (idempotent)."""
    if getattr(engine, "_archiver_mysql", False):
        return
    s = settings or ConnectionSettings()
    # A socket read waits for a statement's answer: at most the statement timeout plus the network
    # bound (an hour when statements have no timeout), then the connection is given up.
    socket_params = {"connect_timeout": s.connect, "read_timeout": (s.statement or 3600) + s.network,
                     "write_timeout": s.network}

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(dialect, conn_rec, cargs, cparams):  # pragma: no cover - every MySQL test
        if engine.dialect.driver == "pymysql":
            for key, value in socket_params.items():
                cparams.setdefault(key, value)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - every MySQL test
        cur = dbapi_conn.cursor()
        try:
            cur.execute("SELECT VERSION()")
            mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {int(s.lock)}")
            if mariadb:
                cur.execute(f"SET SESSION max_statement_time = {int(s.statement)}")
                if s.idle_in_transaction:
                    cur.execute(f"SET SESSION idle_transaction_timeout = {int(s.idle_in_transaction)}")
            else:
                cur.execute(f"SET SESSION max_execution_time = {int(s.statement) * 1000}")
        finally:
            cur.close()

    engine._archiver_mysql = True  # type: ignore[attr-defined]
