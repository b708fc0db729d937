"""Throwaway databases and users on a MariaDB server: TEST_MARIADB_URL's, else the local one.

Tests skip when none answers — or fail, under CI=true (see tests/app_support.py); the ``server``
fixture (tests/conftest.py) hands out a :class:`Server`.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa

from archiver.engine.connections import make_engine
from tests.app_support import drop_mariadb_databases, url_for_database


class Server:
    """Throwaway databases (and users) on the local MariaDB, dropped at the end."""

    def __init__(self, admin: sa.Engine, base_url: str) -> None:
        self.admin = admin
        self.base_url = base_url
        self.names: list[str] = []
        self.users: list[str] = []
        self.engines: list[sa.Engine] = []

    def database(self) -> tuple[str, sa.Engine]:
        name = f"archiver_t_{uuid.uuid4().hex[:10]}"
        self._sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.names.append(name)
        return name, self.engine(name)

    def url(self, db: str, user: str | None = None) -> str:
        """The server's URL naming database ``db`` (as ``user``, passwordless, when given)."""
        return url_for_database(self.base_url, db, user)

    def engine(self, db: str, user: str | None = None) -> sa.Engine:
        engine = make_engine(self.url(db, user))
        self.engines.append(engine)
        return engine

    def user(self, *grants: str) -> str:
        name = f"arch_{uuid.uuid4().hex[:8]}"
        self._sql(f"CREATE USER '{name}'@'%'", f"CREATE USER '{name}'@'localhost'")
        self.users.append(name)
        for grant in grants:
            self._sql(grant.format(user=f"'{name}'@'%'"), grant.format(user=f"'{name}'@'localhost'"))
        return name

    def _sql(self, *statements: str) -> None:
        with self.admin.connect() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt.replace("%", "%%"))  # no parameters: % is literal

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        drop_mariadb_databases(self.admin, self.names)
        for user in self.users:
            self._sql(f"DROP USER IF EXISTS '{user}'@'%'", f"DROP USER IF EXISTS '{user}'@'localhost'")
        self.admin.dispose()


def pad_table(engine: sa.Engine, table: str, first_id: int, rows: int, values: str) -> None:
    """Add ``rows`` rows with ids from ``first_id`` (``values``: the other columns, as SQL), and ANALYZE.

    Batches overlap only on tables the server estimates at 10,000 rows or more.
    """
    with engine.connect() as conn:
        sql = f"INSERT INTO {table} SELECT seq, {values} FROM seq_{first_id}_to_{first_id + rows - 1}"
        conn.exec_driver_sql(sql.replace("%", "%%"))  # no parameters: % is literal
        conn.commit()
        conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()


@contextmanager
def stopped_replication(engine: sa.Engine, name: str) -> Iterator[None]:
    """A replication connection ``name`` configured on ``engine``'s MariaDB server and not started
    (the server is then a replica that does not replicate); removed at the end. Skips where the
    server does not let this user configure one."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql(f"CHANGE MASTER '{name}' TO MASTER_HOST='127.0.0.1', MASTER_PORT=9, "
                                 "MASTER_USER='nobody'")
        except sa.exc.DBAPIError as exc:  # pragma: no cover - a server without replication privileges
            pytest.skip(f"cannot configure a replication connection here: {exc.orig}")
    try:
        yield
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"RESET SLAVE '{name}' ALL")
