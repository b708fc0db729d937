"""Fixtures: a fresh app and throwaway databases per test.

Every test that asks for ``app`` (or ``databases``) runs once on SQLite files
and once more on real PostgreSQL when ``TEST_POSTGRES_URL`` is set, each in its
own pair of schemas (source and archive) dropped after the test.
"""
from __future__ import annotations

import contextlib
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
from archiver.services import database
from archiver.services.identity import access_token_for
from archiver.services.passwords import hash_password

PG_URL = os.environ.get("TEST_POSTGRES_URL")
# Meets the password rules (12+ characters, not common, not containing a test username).
PASSWORD = "correct-horse-battery"
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
JWT_SECRET = "tests-jwt-secret-0123456789abcdef-0123456789"


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
    """SQLite files in ``tmp_path``, or a pair of fresh schemas in TEST_POSTGRES_URL's database
    (dropped at the end)."""
    if backend == "sqlite":
        yield Databases("sqlite", f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'archive.db'}")
        return
    suffix = uuid.uuid4().hex[:12]
    schemas = (f"t_{suffix}_src", f"t_{suffix}_arc")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for s in schemas:
            conn.exec_driver_sql(f'CREATE SCHEMA "{s}"')
    try:
        yield Databases("postgres", pg_schema_url(PG_URL, schemas[0]), pg_schema_url(PG_URL, schemas[1]))
    finally:
        with admin.connect() as conn:
            for s in schemas:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def databases(request, tmp_path) -> Iterator[Databases]:
    with throwaway_databases(request.param, tmp_path) as dbs:
        yield dbs


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


@pytest.fixture
def app(databases):
    app = make_app(databases)
    with app.app_context():
        database.init_db()
    yield app
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def signup_enabled(app):
    """Sign-up is off outside development (SIGNUP_ENABLED); turn it on for this app."""
    app.config["SIGNUP_ENABLED"] = True
    return app


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def source_engine(app) -> sa.Engine:
    with app.app_context():
        return db.engines["source"]


@pytest.fixture
def archive_engine(app) -> sa.Engine:
    with app.app_context():
        return db.engines[None]


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


@pytest.fixture
def accounts(app) -> Accounts:
    return Accounts(app)
