"""Where the benchmark's databases live: ``bench_*`` databases on a PostgreSQL or MariaDB
server, or SQLite files in the run's work directory.

Each backend builds a template per data set once, then gives every measured pipeline a
fresh source (a copy of the template: PostgreSQL ``CREATE DATABASE … TEMPLATE``, MariaDB
``INSERT … SELECT`` per table into a new database, a copied SQLite file) and an empty
archive database.
"""
from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from . import datasets
from .datasets import Dataset

LABELS = {"pg": "PostgreSQL → PostgreSQL", "sqlite": "SQLite → SQLite", "mariadb": "MariaDB → MariaDB"}


@dataclass
class Pair:
    """A fresh source (a copy of a data set) and an empty archive database."""

    source_url: str
    archive_url: str
    source_name: str  # database name, or file path for SQLite
    archive_name: str


def raw_execute(conn: sa.Connection, sql: str) -> list[Any]:
    """Run trusted SQL text on the DBAPI cursor with no parameters (so ``%`` is literal)."""
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def query(url: str, sql: str) -> list[Any]:
    """Rows of one trusted query on ``url`` (any backend), on a throwaway connection."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return raw_execute(conn, sql)
    finally:
        engine.dispose()


def check_bench_name(name: str) -> None:
    if not name.startswith("bench_") or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch database {name!r}: bench databases are named bench_*")


class Backend:
    key = ""
    dialect = ""

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def build(self, ds: Dataset, n: int, anchor: datetime) -> None:
        """The data set's template (built once per run and data set)."""
        raise NotImplementedError

    def fresh(self, ds: Dataset) -> Pair:
        """A fresh copy of the data set's template as the source, and an empty archive."""
        raise NotImplementedError

    def drop(self, ds: Dataset) -> None:
        """Drop the data set's template and the source/archive databases."""
        raise NotImplementedError

    def before_measure(self) -> None:
        """Settle the server before a measured pipeline (PostgreSQL: CHECKPOINT)."""

    def close(self) -> None:
        pass


# --- PostgreSQL ------------------------------------------------------------------

class Postgres(Backend):
    key = dialect = "pg"

    def __init__(self, url: str, tag: str) -> None:
        self.url = make_url(url)
        self.tag = tag
        self._admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def name(self, role: str) -> str:
        return f"bench_{self.tag}_{role}"

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def dsn_for(self, database: str) -> str:
        """libpq URI (no SQLAlchemy driver suffix) for psycopg2."""
        return self.url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)

    def execute(self, sql: str, database: str | None = None) -> list[Any]:
        if database is None:
            with self._admin.connect() as conn:
                return raw_execute(conn, sql)
        engine = sa.create_engine(self.url_for(database), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return raw_execute(conn, sql)
        finally:
            engine.dispose()

    def drop_db(self, name: str) -> None:
        check_bench_name(name)
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_db(self, name: str, template: str | None = None) -> None:
        check_bench_name(name)
        self.drop_db(name)
        if template is None:
            self.execute(f'CREATE DATABASE "{name}"')
        else:
            self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY = FILE_COPY')

    def build(self, ds: Dataset, n: int, anchor: datetime) -> None:
        tpl = self.name(f"tpl_{ds.name}")
        self.create_db(tpl)
        for sql in ds.build_sql("pg", n, anchor):
            self.execute(sql, tpl)
        for table in ds.tables:
            self.execute(f"VACUUM ANALYZE {table.name}", tpl)

    def fresh(self, ds: Dataset) -> Pair:
        src, arch = self.name("src"), self.name("arch")
        self.create_db(src, template=self.name(f"tpl_{ds.name}"))
        self.create_db(arch)
        return Pair(self.url_for(src), self.url_for(arch), src, arch)

    def drop(self, ds: Dataset) -> None:
        for role in ("src", "arch", f"tpl_{ds.name}"):
            self.drop_db(self.name(role))

    def before_measure(self) -> None:
        self.execute("CHECKPOINT")

    def version(self) -> str:
        return str(self.execute("SHOW server_version")[0][0])

    def close(self) -> None:
        self._admin.dispose()


# --- MariaDB / MySQL ------------------------------------------------------------

class MariaDb(Backend):
    key = "mariadb"
    dialect = "mariadb"

    def __init__(self, url: str, tag: str) -> None:
        self.url = make_url(url)
        self.tag = tag

    def name(self, role: str) -> str:
        return f"bench_{self.tag}_{role}"

    def url_for(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def execute(self, *statements: str) -> list[Any]:
        engine = sa.create_engine(self.url.set(database=None), isolation_level="AUTOCOMMIT",
                                  poolclass=sa.pool.NullPool)
        rows: list[Any] = []
        try:
            with engine.connect() as conn:
                for sql in statements:
                    rows = raw_execute(conn, sql)
        finally:
            engine.dispose()
        return rows

    def drop_db(self, name: str) -> None:
        check_bench_name(name)
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def create_db(self, name: str) -> None:
        self.drop_db(name)
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def build(self, ds: Dataset, n: int, anchor: datetime) -> None:
        tpl = self.name(f"tpl_{ds.name}")
        self.create_db(tpl)
        self._in(tpl, *ds.build_sql("mariadb", n, anchor), *(f"ANALYZE TABLE {t.name}" for t in ds.tables))

    def _in(self, database: str, *statements: str) -> None:
        """Run statements with ``database`` as the default database."""
        self.execute(f"USE `{database}`", *statements)

    def fresh(self, ds: Dataset) -> Pair:
        src, arch, tpl = self.name("src"), self.name("arch"), self.name(f"tpl_{ds.name}")
        self.create_db(src)
        # The tables with their DDL (CREATE TABLE … LIKE would drop the foreign keys), then the rows.
        self._in(src, *ds.ddl("mariadb"),
                 *(f"INSERT INTO {t.name} SELECT * FROM `{tpl}`.{t.name} ORDER BY id" for t in ds.tables),
                 *(f"ANALYZE TABLE {t.name}" for t in ds.tables))
        self.create_db(arch)
        return Pair(self.url_for(src), self.url_for(arch), src, arch)

    def drop(self, ds: Dataset) -> None:
        for role in ("src", "arch", f"tpl_{ds.name}"):
            self.drop_db(self.name(role))

    def variable(self, name: str) -> str | None:
        rows = self.execute(f"SELECT @@{name}")
        return None if not rows or rows[0][0] is None else str(rows[0][0])


# --- SQLite ------------------------------------------------------------------------

def _unlink_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Sqlite(Backend):
    key = dialect = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def template(self, ds: Dataset) -> Path:
        return self.workdir / f"tpl_{ds.name}.db"

    def build(self, ds: Dataset, n: int, anchor: datetime) -> None:
        path = self.template(ds)
        _unlink_db(path)
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.create_function("bench_note", 1, datasets.note_for, deterministic=True)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = OFF")
            con.execute("BEGIN")
            for sql in ds.build_sql("sqlite", n, anchor):
                con.execute(sql)
            con.execute("COMMIT")
            con.execute("ANALYZE")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()

    def fresh(self, ds: Dataset) -> Pair:
        src, arch = self.workdir / "src.db", self.workdir / "arch.db"
        _unlink_db(src)
        _unlink_db(arch)
        shutil.copyfile(self.template(ds), src)
        return Pair(f"sqlite:///{src}", f"sqlite:///{arch}", str(src), str(arch))

    def drop(self, ds: Dataset) -> None:
        for path in (self.template(ds), self.workdir / "src.db", self.workdir / "arch.db"):
            _unlink_db(path)
