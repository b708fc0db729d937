"""Every shared fixture of the suite (test modules import helpers from the ``*_support`` modules,
never fixtures, and never another test module: tests/test_architecture.py checks it).

* ``databases``: throwaway databases per backend (tests/app_support.py says how and when each runs);
  ``app`` is the app on them, its archive schema made by ``init-db`` — the migrations, as in
  production (about 15 ms more per test than create_all on SQLite; the two schemas are equal:
  tests/test_migrations.py); ``client``, ``runner``, ``accounts`` and the two engines go with it.
* ``engines``: source and archive engines for engine-only tests, archive schema created.
* ``server``, ``mysql_db``, ``overlap_small_tables``: MariaDB-only tests (tests/mariadb_support.py).
* ``rc``: an app for the run-control tests that start real processes (tests/run_support.py).
"""
from __future__ import annotations

import logging
import os
import uuid
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from archiver.engine import schema
from archiver.engine.connections import make_engine
from archiver.extensions import db
from archiver.services import database
from tests.app_support import (BACKENDS, MARIADB_DEFAULT_URL, Accounts, Databases, drop_mariadb_databases, make_app,
                               mariadb_url, throwaway_databases, unavailable, url_for_database)
from tests.engine_support import Engines
from tests.mariadb_support import Server
from tests.monitoring_support import LogCatcher
from tests.run_support import RC_BACKENDS, app_on


@pytest.fixture(params=BACKENDS)
def databases(request, tmp_path) -> Iterator[Databases]:
    with throwaway_databases(request.param, tmp_path) as dbs:
        yield dbs


@pytest.fixture
def app(request, databases):
    """The app on fresh databases, its archive schema made by init-db; a test marked
    ``@pytest.mark.app_config(NAME=value, ...)`` gets those settings too."""
    marker = request.node.get_closest_marker("app_config")
    app = make_app(databases, **(marker.kwargs if marker else {}))
    with app.app_context():
        database.init_db()
    yield app
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[None]:
    """Every test: no log record (message, extra fields, traceback) holds a token the test could
    have been issued or a password of the tests (tests/monitoring_support.py lists them)."""
    catcher = LogCatcher()
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        yield
    finally:
        root.removeHandler(catcher)
    leaks = catcher.leaks()
    assert not leaks, f"secrets in the logs: {leaks[:3]}"


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


@pytest.fixture
def accounts(app) -> Accounts:
    return Accounts(app)


@pytest.fixture
def engines(databases) -> Iterator[Engines]:
    """Source and archive engines on the test's throwaway databases, archive schema created."""
    src = make_engine(databases.source_url)
    arc = make_engine(databases.archive_url)
    schema.metadata.create_all(arc)
    try:
        yield Engines(databases.backend, src, arc)
    finally:
        src.dispose()
        arc.dispose()


@pytest.fixture
def server() -> Iterator[Server]:
    """Throwaway databases and users on the MariaDB server (MariaDB only: in-server moves)."""
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
def mysql_db() -> Iterator[sa.Engine]:
    """A throwaway database on the MariaDB/MySQL server of the tests."""
    base = mariadb_url()
    name = f"archiver_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    engine = make_engine(url_for_database(base, name))
    try:
        yield engine
    finally:
        engine.dispose()
        drop_mariadb_databases(admin, [name])
        admin.dispose()


@pytest.fixture
def overlap_small_tables(monkeypatch):
    """Let batches overlap on these tests' small tables (the size threshold has tests of its own)."""
    from archiver.engine.backends.mysql import MySQLSourceOps
    monkeypatch.setattr(MySQLSourceOps, "min_pipeline_rows", 0)


@pytest.fixture(params=RC_BACKENDS)
def rc(request, tmp_path):
    """(app, databases, source engine, archive engine) on throwaway databases of each backend
    (MariaDB: two databases of the local server when TEST_MARIADB_URL is not set)."""
    if request.param == "mariadb" and "mariadb" not in BACKENDS:
        admin = sa.create_engine(MARIADB_DEFAULT_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        names = [f"archiver_rc_{os.urandom(5).hex()}" for _ in range(2)]
        with admin.connect() as conn:
            for n in names:
                conn.exec_driver_sql(f"CREATE DATABASE `{n}` CHARACTER SET utf8mb4")
        urls = [make_url(MARIADB_DEFAULT_URL).set(database=n).render_as_string(hide_password=False) for n in names]
        try:
            yield from app_on(Databases("mariadb", *urls))
        finally:
            drop_mariadb_databases(admin, names)
            admin.dispose()
        return
    with throwaway_databases(request.param, tmp_path) as dbs:
        yield from app_on(dbs)
