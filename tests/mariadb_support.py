"""Throwaway databases and users on a MariaDB server: TEST_MARIADB_URL's, else the local one.

Tests skip when none answers — or fail, under CI=true (see tests/conftest.py).
"""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from archiver.engine.connections import make_engine
from tests.conftest import drop_mariadb_databases, mariadb_url, unavailable, url_for_database


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


@pytest.fixture
def server():
    base = mariadb_url()
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        version = str(conn.exec_driver_sql("SELECT VERSION()").scalar())
    if "mariadb" not in version.lower():
        admin.dispose()
        unavailable(f"in-server moves are MariaDB only (the server is {version})")
    srv = Server(admin, base)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def overlap_small_tables(monkeypatch):
    """Let batches overlap on these tests' small tables (the size threshold has tests of its own)."""
    from archiver.engine.backends.mysql import MySQLSourceOps
    monkeypatch.setattr(MySQLSourceOps, "min_pipeline_rows", 0)


def pad_table(engine: sa.Engine, table: str, first_id: int, rows: int, values: str) -> None:
    """Add ``rows`` rows with ids from ``first_id`` (``values``: the other columns, as SQL), and ANALYZE.

    Batches overlap only on tables the server estimates at 10,000 rows or more.
    """
    with engine.connect() as conn:
        sql = f"INSERT INTO {table} SELECT seq, {values} FROM seq_{first_id}_to_{first_id + rows - 1}"
        conn.exec_driver_sql(sql.replace("%", "%%"))  # no parameters: % is literal
        conn.commit()
        conn.exec_driver_sql(f"ANALYZE TABLE {table}").all()
