"""Helpers of the tests that run the service as real processes (run control, network faults)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa

from archiver.extensions import db
from archiver.services import database
from tests.app_support import BACKENDS, JWT_SECRET, MARIADB_DEFAULT_URL, Databases, make_app

ROOT = Path(__file__).resolve().parents[1]


def _maria_available() -> bool:
    try:
        engine = sa.create_engine(MARIADB_DEFAULT_URL, poolclass=sa.pool.NullPool,
                                  connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


#: The databases fixture's backends, plus the local MariaDB when TEST_MARIADB_URL is not set.
RC_BACKENDS = BACKENDS + (["mariadb"] if "mariadb" not in BACKENDS and _maria_available() else [])


def app_on(dbs: Databases) -> Iterator[tuple]:
    """(app, databases, source engine, archive engine) on ``dbs``, archive schema made by init-db."""
    app = make_app(dbs)
    with app.app_context():
        database.init_db()
        engines = db.engines["source"], db.engines[None]
    try:
        yield app, dbs, *engines
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def child_env(dbs: Databases, **extra: str) -> dict[str, str]:
    """The environment of a service process on ``dbs`` (this environment's ARCHIVER_* settings left out)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "FLASK_", "IN_SERVER_"))}
    env.update({"ARCHIVER_ENV": "testing", "SOURCE_DATABASE_URL": dbs.source_url,
                "ARCHIVE_DATABASE_URL": dbs.archive_url, "JWT_SECRET_KEY": JWT_SECRET,
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **extra})
    return env


def archive_now(dbs: Databases, *args: str, **env: str) -> subprocess.Popen:
    """``flask archive-now *args`` as a process of its own, output piped."""
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "archiver", "archive-now", *args], cwd=ROOT,
                            env=child_env(dbs, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    """The first line of ``proc``'s output holding ``needle`` (fails when it ends or times out first)."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if needle in line:
            return line
        assert time.monotonic() < deadline, f"no {needle!r} line in time"
    raise AssertionError(f"process ended without a {needle!r} line: {proc.wait()} {proc.stderr.read()[-2000:]}")
