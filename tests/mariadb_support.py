"""Throwaway databases and users on the local MariaDB server (tests skip when none answers)."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from archiver.engine.connections import make_engine

URL = "mysql+pymysql://{user}@127.0.0.1:3306/{db}?charset=utf8mb4"


class Server:
    """Throwaway databases (and users) on the local MariaDB, dropped at the end."""

    def __init__(self, admin: sa.Engine) -> None:
        self.admin = admin
        self.names: list[str] = []
        self.users: list[str] = []
        self.engines: list[sa.Engine] = []

    def database(self) -> tuple[str, sa.Engine]:
        name = f"archiver_t_{uuid.uuid4().hex[:10]}"
        self._sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.names.append(name)
        return name, self.engine(name)

    @staticmethod
    def url(db: str, user: str = "root") -> str:
        return URL.format(user=user, db=db)

    def engine(self, db: str, user: str = "root") -> sa.Engine:
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
        for name in self.names:
            self._sql(f"DROP DATABASE IF EXISTS `{name}`")
        for user in self.users:
            self._sql(f"DROP USER IF EXISTS '{user}'@'%'", f"DROP USER IF EXISTS '{user}'@'localhost'")
        self.admin.dispose()


@pytest.fixture
def server():
    admin = sa.create_engine(URL.format(user="root", db="test"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            if "mariadb" not in str(conn.exec_driver_sql("SELECT VERSION()").scalar()).lower():
                pytest.skip("in-server moves are MariaDB only")
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        pytest.skip(f"MariaDB not available: {type(exc).__name__}")
    srv = Server(admin)
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
