"""`flask --app archiver archive-now` imports only what it uses: no HTTP layer (flask-smorest, apispec,
marshmallow, webargs, the blueprints), no scheduler, no migrations, and no criteria parser unless a
policy has criteria. (How long it takes is measured by the benchmark, not here.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_support import JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_A_JOB = ("flask_smorest", "apispec", "marshmallow", "webargs", "archiver.api", "apscheduler",
                 "flask_apscheduler", "alembic", "flask_migrate", "archiver.scheduler")


def imported_by(command: list[str], databases) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "FLASK_"))}
    env.update({"ARCHIVER_ENV": "testing", "SOURCE_DATABASE_URL": databases.source_url,
                "ARCHIVE_DATABASE_URL": databases.archive_url, "JWT_SECRET_KEY": JWT_SECRET,
                "PYTHONPATH": str(ROOT)})
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "flask", "--app", "archiver", *command],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    modules = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.M))
    return done, modules


@pytest.mark.parametrize("criteria", [None, "note = 'x'"])
def test_archive_now_imports_no_http_layer_scheduler_or_migrations(app, databases, source_engine, criteria):
    with source_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (id INTEGER PRIMARY KEY, created_at TIMESTAMP, note VARCHAR(20))")
    from archiver.extensions import db
    from archiver.models import ArchivePolicy
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="events", archive_after_days=30, delete_after_days=365,
                                     custom_criteria=criteria))
        db.session.commit()
    done, modules = imported_by(["archive-now", "--table", "events"], databases)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "events: succeeded" in done.stdout
    assert "archiver.engine.archive" in modules and "sqlalchemy" in modules  # the trace is complete
    loaded = sorted(m for m in modules if m.split(".")[0] in NOT_FOR_A_JOB or m.startswith(NOT_FOR_A_JOB))
    assert loaded == []
    assert ("sqlglot" in modules) is (criteria is not None)


def test_serving_commands_still_get_the_whole_app(app, databases):
    done, modules = imported_by(["routes"], databases)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "/archives/<string:table_name>" in done.stdout and "flask_smorest" in modules
