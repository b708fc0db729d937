"""The project as a user runs it.

Set-up (not timed): ``init-db`` on an empty archive database, an admin, and the
policy made through the API — ``POST /config`` on the app's test client with only
``table_name``, ``archive_after_days`` and ``delete_after_days``, every other field
(batch_size, date_column, …) left to its default.

The measured part: ``flask --app archiver archive-now --table <table>`` as a fresh
process, the ``flask`` entry point next to the running interpreter (``.venv/bin/flask``
under scripts/bench.sh), timed by wall clock from spawn to exit (interpreter and app
start-up included). Its outcome is read afterwards from the archive database's run
record (``archive_runs``: status, rows_deleted, error); its text output is not parsed.
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import ROOT
from .datasets import ARCHIVE_AFTER_DAYS, DELETE_AFTER_DAYS
from .proc import Child, run

ADMIN = "bench_admin"


@dataclass
class Settings:
    """The service's configuration for one source/archive pair (the same for set-up and job)."""

    source_url: str
    archive_url: str
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    extra: dict[str, Any] = field(default_factory=dict)   # e.g. IN_SERVER_MOVES=False

    def overrides(self) -> dict[str, Any]:
        """create_app's settings (typed)."""
        return {"ARCHIVER_ENV": "production", "SOURCE_DATABASE_URL": self.source_url,
                "ARCHIVE_DATABASE_URL": self.archive_url, "JWT_SECRET_KEY": self.secret,
                "JWT_ACCESS_TOKEN_MINUTES": 240, "SCHEDULER_ENABLED": False, **self.extra}

    def env(self) -> dict[str, str]:
        """The same settings as a process environment."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # a user's shell has none: `flask --app archiver` finds the package from cwd
        for key, value in self.overrides().items():
            env[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return env


def flask_command() -> str:
    """The ``flask`` entry point installed with the interpreter running the bench (.venv/bin/flask)."""
    path = Path(sys.executable).with_name("flask")
    if not path.exists():
        raise RuntimeError(f"no flask entry point next to {sys.executable}: run the bench from the project's .venv")
    return str(path)


def check_instance_config() -> None:
    """instance/config.py wins over the environment: it would point the job at other databases."""
    path = ROOT / "instance" / "config.py"
    if path.exists():
        raise RuntimeError(f"{path} exists and would override the benchmark's databases: move it aside")


def setup(settings: Settings, table: str, policy: dict[str, Any] | None = None,
          cursor_after_id: int | None = None) -> dict[str, Any]:
    """init-db, an admin, and ``POST /config`` for ``table``; returns the stored policy and a token.

    ``policy``: extra policy fields (none for the user-view row: the defaults). With
    ``cursor_after_id``, also the API's listing cursor for the page after that archived row id.
    """
    from archiver import create_app
    from archiver.extensions import db
    from archiver.services import database, users

    app = create_app({**settings.overrides(), "BCRYPT_ROUNDS": 4})
    password = secrets.token_urlsafe(16)
    result: dict[str, Any] = {}
    try:
        with app.app_context():
            database.init_db()
            users.create_or_reset_admin(ADMIN, password)
            client = app.test_client()
            login = client.post("/auth/login", json={"username": ADMIN, "password": password})
            if login.status_code != 200:
                raise RuntimeError(f"POST /auth/login answered {login.status_code}: {login.get_data(as_text=True)[:300]}")
            token = login.get_json()["access_token"]
            body = {"table_name": table, "archive_after_days": ARCHIVE_AFTER_DAYS,
                    "delete_after_days": DELETE_AFTER_DAYS, **(policy or {})}
            answer = client.post("/config", json=body, headers={"Authorization": f"Bearer {token}"})
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"POST /config answered {answer.status_code}: {answer.get_data(as_text=True)[:500]}")
            result = {"policy": answer.get_json(), "token": token}
            if cursor_after_id is not None:
                result["cursor"] = _mint_cursor(table, cursor_after_id)
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
    return result


def _mint_cursor(table: str, after_id: int, order: str = "desc") -> str | None:
    """The API's ``next_cursor`` for the unfiltered listing page that follows row ``after_id``
    (signed by the app's own cursor service; needs an app context). None if that service is not there."""
    try:
        from archiver.engine.restore import ArchiveFilters
        from archiver.services.cursors import encode_cursor
    except ImportError:
        return None
    return encode_cursor(table, order, ArchiveFilters.from_mapping({}).fingerprint(), after_id)


def run_job(settings: Settings, kind: str, table: str) -> Child:
    """``flask --app archiver <kind>-now --table <table>``: a fresh process, timed whole."""
    return run([flask_command(), "--app", "archiver", f"{kind}-now", "--table", table], env=settings.env(), cwd=ROOT)


@dataclass
class RunRecord:
    status: str
    rows_deleted: int
    rows_written: int
    batches: int
    error: str | None


def last_run(archive_url: str, kind: str, table: str) -> RunRecord | None:
    """The newest run record of ``kind`` for ``table`` in the archive database (None if none)."""
    engine = sa.create_engine(archive_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT status, rows_deleted, rows_written, batches, error FROM archive_runs "
                "WHERE kind = :kind AND table_name = :table ORDER BY id DESC LIMIT 1"),
                {"kind": kind, "table": table}).first()
    finally:
        engine.dispose()
    if row is None:
        return None
    return RunRecord(row.status, int(row.rows_deleted), int(row.rows_written), int(row.batches), row.error)


def warm_job(settings: Settings, table: str, result_file: Path, profile: str = "") -> Child:
    """The job in a warm process (``python -m bench.worker``): app built first, only the job timed."""
    argv = [sys.executable, "-m", "bench.worker", "--result", str(result_file), "--table", table]
    if profile:
        argv += ["--profile", profile]
    return run(argv, env=settings.env(), cwd=ROOT)  # `python -m` from ROOT finds the bench and archiver
