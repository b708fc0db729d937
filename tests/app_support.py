"""The test databases and apps; the fixtures built on them are in tests/conftest.py.

Every test that asks for ``app`` (or ``databases``) runs once on SQLite files, once more on real
PostgreSQL when ``TEST_POSTGRES_URL`` is set (its own pair of schemas, source and archive), and once
more on MariaDB when ``TEST_MARIADB_URL`` is set (its own pair of databases on that server); all are
dropped after the test.

Under ``CI=true`` a database test never skips: a backend whose URL is missing or whose server does
not answer fails every test that needs it (.ci/run starts both servers and sets both URLs).
Locally such tests skip, saying why, and a backend without its URL is not run at all.
"""
from __future__ import annotations

import contextlib
import functools
import os
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from archiver import create_app
from archiver.extensions import db
from archiver.models import Role, TablePermission, User
from archiver.services.identity import access_token_for
from archiver.services.passwords import hash_password

CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
PG_URL = os.environ.get("TEST_POSTGRES_URL") or None
#: A MariaDB server (any database on it: tests create and drop databases of their own beside it).
MARIADB_URL = os.environ.get("TEST_MARIADB_URL") or None
#: The server the MariaDB-only tests (tests/mariadb_support.py, test_engine_mysql.py) use when
#: TEST_MARIADB_URL is not set: the local one, as root without a password.
MARIADB_DEFAULT_URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
# Meets the password rules (12+ characters, not common, not containing a test username).
PASSWORD = "correct-horse-battery"
BACKENDS = (["sqlite"] + (["postgres"] if PG_URL or CI else [])
            + (["mariadb"] if MARIADB_URL or CI else []))
JWT_SECRET = "tests-jwt-secret-0123456789abcdef-0123456789"


def unavailable(reason: str):
    """Skip a test whose database is not there — or, under CI=true, fail it: CI must run them all."""
    if CI:
        pytest.fail(f"{reason} (CI=true: database tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


@functools.lru_cache(maxsize=None)
def _unreachable(url: str) -> str | None:
    """Why ``url``'s server does not answer (None when it does); asked once per test session."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except sa.exc.DBAPIError as exc:
        return f"{type(exc.orig).__name__}: {str(exc.orig).splitlines()[0][:200]}"
    finally:
        engine.dispose()


def require_server(env_name: str, url: str | None) -> str:
    """``url`` when its server answers; otherwise skip (locally) or fail (CI) naming the problem."""
    if not url:
        unavailable(f"{env_name} not set")
    error = _unreachable(url)
    if error:
        unavailable(f"{env_name} server not reachable ({error})")
    return url


def mariadb_url() -> str:
    """The MariaDB server of the MariaDB tests: TEST_MARIADB_URL, else the local default (skip or,
    under CI, fail when it does not answer)."""
    return require_server("TEST_MARIADB_URL" if MARIADB_URL else "MariaDB (TEST_MARIADB_URL unset, local default)",
                          MARIADB_URL or MARIADB_DEFAULT_URL)


def url_for_database(base: str, database: str, user: str | None = None) -> str:
    """``base`` (a MariaDB/MySQL URL) naming another database (and, optionally, another passwordless user)."""
    url = make_url(base).set(database=database)
    if user is not None:
        url = url.set(username=user, password=None)
    return url.render_as_string(hide_password=False)


def drop_mariadb_databases(admin: sa.Engine, names: list[str]) -> None:
    """DROP DATABASE, after ending any session still inside them (a leaked transaction's metadata lock
    would make DROP wait for hours): MariaDB's counterpart of PostgreSQL's DROP DATABASE … WITH (FORCE)."""
    with admin.connect() as conn:
        for name in names:
            ids = conn.execute(sa.text("SELECT id FROM information_schema.processlist WHERE db = :db "
                                       "AND id <> CONNECTION_ID()"), {"db": name}).scalars().all()
            for session_id in ids:
                with contextlib.suppress(sa.exc.DBAPIError):  # it may have ended meanwhile
                    conn.exec_driver_sql(f"KILL {int(session_id)}")
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


@dataclass(frozen=True)
class Databases:
    backend: str
    source_url: str
    archive_url: str


def pg_schema_url(base: str, schema: str) -> str:
    """``base`` with every connection's search_path set to ``schema``."""
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def throwaway_databases(backend: str, tmp_path) -> Iterator[Databases]:
    """SQLite files in ``tmp_path``, a pair of fresh schemas in TEST_POSTGRES_URL's database, or a pair
    of fresh databases on TEST_MARIADB_URL's server (dropped at the end)."""
    if backend == "sqlite":
        yield Databases("sqlite", f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'archive.db'}")
        return
    suffix = uuid.uuid4().hex[:12]
    names = (f"t_{suffix}_src", f"t_{suffix}_arc")
    if backend == "mariadb":
        base = require_server("TEST_MARIADB_URL", MARIADB_URL)
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            yield Databases("mariadb", url_for_database(base, names[0]), url_for_database(base, names[1]))
        finally:
            drop_mariadb_databases(admin, list(names))
            admin.dispose()
        return
    base = require_server("TEST_POSTGRES_URL", PG_URL)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for s in names:
            conn.exec_driver_sql(f'CREATE SCHEMA "{s}"')
    try:
        yield Databases("postgres", pg_schema_url(base, names[0]), pg_schema_url(base, names[1]))
    finally:
        with admin.connect() as conn:
            for s in names:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        admin.dispose()


#: Run a ``databases``-based test on every backend but MariaDB (each use says why).
not_on_mariadb = pytest.mark.parametrize("databases", [b for b in BACKENDS if b != "mariadb"], indirect=True)


def make_app(databases: Databases, **overrides):
    config = {
        "ARCHIVER_ENV": "testing",
        "TESTING": True,
        "SOURCE_DATABASE_URL": databases.source_url,
        "ARCHIVE_DATABASE_URL": databases.archive_url,
        "JWT_SECRET_KEY": JWT_SECRET,
        "BCRYPT_ROUNDS": 4,
        "SCHEDULER_ENABLED": False,
    }
    config.update(overrides)
    return create_app(config)


class Accounts:
    """Make users directly in the archive DB and mint their bearer headers."""

    def __init__(self, app):
        self.app = app

    def create(self, username: str, password: str = PASSWORD, role: str = Role.USER.value,
               tables: list[str] | tuple[str, ...] = (), active: bool = True) -> int:
        with self.app.app_context():
            user = User(username=username, password_hash=hash_password(password, 4), role=role, active=active)
            user.permissions = [TablePermission(table_name=t) for t in tables]
            db.session.add(user)
            db.session.commit()
            return user.id

    def headers(self, username: str) -> dict[str, str]:
        with self.app.app_context():
            user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one()
            return {"Authorization": f"Bearer {access_token_for(user)}"}

    def admin(self, username: str = "admin") -> dict[str, str]:
        self.create(username, role=Role.ADMIN.value)
        return self.headers(username)

    def user(self, username: str, tables: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
        self.create(username, tables=tables)
        return self.headers(username)
