"""Benchmark data: the ``events`` table on each backend, and bench database admin.

Every backend gets the same N rows. Row ``g`` (1..N) is::

    id         g
    created_at anchor - (g % 400) days - (2 h + g % 72000 s)   (naive UTC)
    user_id    g % 5000
    kind       click | view | buy | refund  (by g % 4)
    amount     (g % 100000) / 100          numeric(12,2)
    note       first 100 hex chars of md5(g) md5(g+1) md5(g+2) md5(g+3)

so the rows spread evenly over 400 days, and a row is older than
``anchor - 30 days`` exactly when ``g % 400 >= 30`` (92.5% of them). Times of
day stay between 02:00 and 22:00 before the anchor, so any cutoff within two
hours of ``anchor - 30 days`` selects exactly the same rows: the project's job
(which uses its own clock) and the baselines (which use the anchor) move the
same set.

Each measured pipeline gets a fresh copy of one template: a PostgreSQL
``CREATE DATABASE … TEMPLATE``, a MariaDB ``INSERT … SELECT`` from the template
table, a copied SQLite file.
"""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

ARCHIVE_AFTER_DAYS = 30
DELETE_AFTER_DAYS = 365
TABLE = "events"
KINDS = ("click", "view", "buy", "refund")


# --- the data set ---------------------------------------------------------

def make_anchor() -> datetime:
    """'Now' for a data set: naive UTC, whole seconds."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def cutoff_for(anchor: datetime, days: int = ARCHIVE_AFTER_DAYS) -> datetime:
    return anchor - timedelta(days=days)


def expected_archived(n: int) -> int:
    """How many of rows 1..n have ``g % 400 >= 30`` (older than 30 days)."""
    return (n // 400) * 370 + max(0, n % 400 - 29)


def note_for(g: int) -> str:
    return "".join(hashlib.md5(str(g + i).encode()).hexdigest() for i in range(4))[:100]


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


# --- PostgreSQL -----------------------------------------------------------

def _events_ddl(id_type: str) -> str:
    """The benchmark's events table (PostgreSQL and SQLite spell it alike but for the key's type)."""
    return f"""
CREATE TABLE events (
  id {id_type} PRIMARY KEY,
  created_at TIMESTAMP NOT NULL,
  user_id INTEGER NOT NULL,
  kind VARCHAR(32) NOT NULL,
  amount NUMERIC(12,2),
  note TEXT
)"""


PG_EVENTS_DDL = _events_ddl("BIGINT")

PG_EVENTS_FILL = """
INSERT INTO events
SELECT g,
       TIMESTAMP '{anchor}' - (g % 400) * INTERVAL '1 day' - (7200 + g % 72000) * INTERVAL '1 second',
       g % 5000,
       (ARRAY['click','view','buy','refund'])[1 + g % 4],
       (g % 100000) / 100.0,
       substr(md5(g::text) || md5((g+1)::text) || md5((g+2)::text) || md5((g+3)::text), 1, 100)
FROM generate_series(1, {n}) AS g"""


class PgAdmin:
    """Create, clone and drop ``bench_*`` databases on one PostgreSQL server."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self._admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def dsn_for(self, database: str) -> str:
        """libpq URI (no SQLAlchemy driver suffix) for psycopg2/psql."""
        return self.url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)

    def execute(self, sql: str, database: str | None = None) -> list[Any]:
        engine = self._admin if database is None else sa.create_engine(
            self.url_for(database), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return _raw_execute(conn, sql)
        finally:
            if database is not None:
                engine.dispose()

    def drop(self, name: str) -> None:
        _check_bench_name(name)
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create(self, name: str, template: str | None = None) -> None:
        _check_bench_name(name)
        self.drop(name)
        if template is None:
            self.execute(f'CREATE DATABASE "{name}"')
        else:
            self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY = FILE_COPY')

    def build_events(self, name: str, n: int, anchor: datetime) -> None:
        """A new database ``name`` holding the events table (the template)."""
        self.create(name)
        self.execute(PG_EVENTS_DDL, name)
        self.execute(PG_EVENTS_FILL.format(anchor=_ts(anchor), n=int(n)), name)
        self.execute("CREATE INDEX ix_events_created_at ON events (created_at)", name)
        self.execute("VACUUM ANALYZE events", name)

    def checkpoint(self) -> None:
        self.execute("CHECKPOINT")

    def version(self) -> str:
        return str(self.execute("SHOW server_version")[0][0])

    def dispose(self) -> None:
        self._admin.dispose()


# --- MariaDB / MySQL ------------------------------------------------------

MARIADB_EVENTS_DDL = """
CREATE TABLE `{db}`.events (
  id BIGINT NOT NULL PRIMARY KEY,
  created_at DATETIME NOT NULL,
  user_id INT NOT NULL,
  kind VARCHAR(32) NOT NULL,
  amount DECIMAL(12,2),
  note TEXT,
  KEY ix_events_created_at (created_at)
) ENGINE=InnoDB"""

MARIADB_EVENTS_FILL = """
INSERT INTO `{db}`.events
SELECT seq,
       TIMESTAMP'{anchor}' - INTERVAL (seq % 400) DAY - INTERVAL (7200 + seq % 72000) SECOND,
       seq % 5000,
       ELT(1 + seq % 4, 'click', 'view', 'buy', 'refund'),
       (seq % 100000) / 100.0,
       LEFT(CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2), MD5(seq + 3)), 100)
FROM `{db}`.seq_1_to_{n}"""


@dataclass
class MariaDbAdmin:
    """Create, copy and drop ``bench_*`` databases on a MariaDB server (PyMySQL)."""

    url: URL

    @classmethod
    def from_url(cls, url: str) -> "MariaDbAdmin":
        return cls(make_url(url))

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def _engine(self) -> sa.Engine:
        return sa.create_engine(self.url.set(database=None), isolation_level="AUTOCOMMIT",
                                poolclass=sa.pool.NullPool)

    def execute(self, *statements: str) -> list[Any]:
        engine = self._engine()
        rows: list[Any] = []
        try:
            with engine.connect() as conn:
                for sql in statements:
                    rows = _raw_execute(conn, sql)
        finally:
            engine.dispose()
        return rows

    def drop(self, name: str) -> None:
        _check_bench_name(name)
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def create(self, name: str) -> None:
        self.drop(name)
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def build_events(self, name: str, n: int, anchor: datetime) -> None:
        self.create(name)
        self.execute(MARIADB_EVENTS_DDL.format(db=name),
                     MARIADB_EVENTS_FILL.format(db=name, anchor=_ts(anchor), n=int(n)),
                     f"ANALYZE TABLE `{name}`.events")

    def copy_events(self, template: str, name: str) -> None:
        """A fresh database ``name`` with a copy of ``template``'s events table."""
        self.create(name)
        self.execute(f"CREATE TABLE `{name}`.events LIKE `{template}`.events",
                     f"INSERT INTO `{name}`.events SELECT * FROM `{template}`.events ORDER BY id",
                     f"ANALYZE TABLE `{name}`.events")

    def count(self, name: str, table: str, where: str = "1=1") -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM `{name}`.`{table}` WHERE {where}")[0][0])

    def variable(self, name: str) -> str | None:
        rows = self.execute(f"SELECT @@{name}")
        return None if not rows or rows[0][0] is None else str(rows[0][0])


# --- SQLite ---------------------------------------------------------------

SQLITE_EVENTS_DDL = _events_ddl("INTEGER")  # INTEGER PRIMARY KEY: the rowid

SQLITE_EVENTS_FILL = """
WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n)
INSERT INTO events
SELECT x,
       datetime(:anchor, '-' || (x % 400) || ' days', '-' || (7200 + x % 72000) || ' seconds'),
       x % 5000,
       CASE x % 4 WHEN 0 THEN 'click' WHEN 1 THEN 'view' WHEN 2 THEN 'buy' ELSE 'refund' END,
       (x % 100000) / 100.0,
       bench_note(x)
FROM g"""


def sqlite_build_events(path: Path, n: int, anchor: datetime) -> None:
    """A new SQLite file at ``path`` holding the events table (WAL mode)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.create_function("bench_note", 1, note_for, deterministic=True)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = OFF")
        con.execute(SQLITE_EVENTS_DDL)
        con.execute("BEGIN")
        con.execute(SQLITE_EVENTS_FILL, {"n": int(n), "anchor": _ts(anchor)})
        con.execute("CREATE INDEX ix_events_created_at ON events (created_at)")
        con.execute("COMMIT")
        con.execute("ANALYZE")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def sqlite_copy(template: Path, dest: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, dest)


def sqlite_count(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    finally:
        con.close()


# --- shared ---------------------------------------------------------------

def _raw_execute(conn: sa.Connection, sql: str) -> list[Any]:
    """Run trusted SQL text on the DBAPI cursor with no parameters (so ``%`` is literal)."""
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def _check_bench_name(name: str) -> None:
    if not name.startswith("bench_") or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch database {name!r}: bench databases are named bench_*")


def count_rows(url: str, table: str, where: str | None = None) -> int:
    """COUNT(*) of ``table`` through SQLAlchemy (any backend)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
            return int(conn.exec_driver_sql(sql).scalar_one())
    finally:
        engine.dispose()
