"""`flask --app archiver archive-now` imports only what it uses: no HTTP layer (flask-smorest, apispec,
marshmallow, webargs, the blueprints, Flask-JWT-Extended and PyJWT), no scheduler, no migrations, no
other command's module (the demo data, users, security), and no criteria parser unless a policy has
criteria. (How long it takes is measured by the benchmark, not here.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_support import JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_A_JOB = ("flask_smorest", "apispec", "marshmallow", "webargs", "archiver.api", "apscheduler",
                 "flask_apscheduler", "alembic", "flask_migrate", "archiver.scheduler", "flask_jwt_extended", "jwt",
                 "archiver.cli.demo", "archiver.cli.users", "archiver.cli.security", "archiver.cli.database",
                 "archiver.services.demo", "archiver.services.tokens")


#: `python -m flask …` that writes the names in sys.modules at exit to the file MODULES_OUT names.
#: (Not `-X importtime`: it does not see a module imported by importlib.import_module, as the CLI's
#: commands and the engine's backends are.)
DRIVER = """
import atexit, os, runpy, sys
def _dump():
    with open(os.environ["MODULES_OUT"], "w") as fh:
        fh.write("\\n".join(sorted(sys.modules)))
atexit.register(_dump)
runpy.run_module("flask", run_name="__main__", alter_sys=True)
"""


def imported_by(command: list[str], databases, tmp_path: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    out = tmp_path / "modules.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "FLASK_"))}
    env.update({"ARCHIVER_ENV": "testing", "SOURCE_DATABASE_URL": databases.source_url,
                "ARCHIVE_DATABASE_URL": databases.archive_url, "JWT_SECRET_KEY": JWT_SECRET,
                "PYTHONPATH": str(ROOT), "MODULES_OUT": str(out)})
    done = subprocess.run([sys.executable, "-c", DRIVER, "--app", "archiver", *command],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    modules = set(out.read_text().split("\n")) if out.exists() else set()
    return done, modules


def cli_module(command: str) -> str:
    from archiver.cli import COMMAND_MODULES
    return COMMAND_MODULES[command]


@pytest.mark.parametrize("criteria", [None, "note = 'x'"])
def test_archive_now_imports_no_http_layer_scheduler_or_migrations(app, databases, source_engine, criteria, tmp_path):
    with source_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (id INTEGER PRIMARY KEY, created_at TIMESTAMP, note VARCHAR(20))")
    from archiver.extensions import db
    from archiver.models import ArchivePolicy
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="events", archive_after_days=30, delete_after_days=365,
                                     custom_criteria=criteria))
        db.session.commit()
    done, modules = imported_by(["archive-now", "--table", "events"], databases, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "events: succeeded" in done.stdout
    assert "archiver.engine.archive" in modules and "sqlalchemy" in modules  # the trace is complete
    loaded = sorted(m for m in modules if m.split(".")[0] in NOT_FOR_A_JOB or m.startswith(NOT_FOR_A_JOB))
    assert loaded == []
    assert ("sqlglot" in modules) is (criteria is not None)
    # nor any library of another command (rich: the progress bar on a terminal only; Flask-Limiter's
    # CLI plugin used to load it for every command), nor the dialect of a database it does not use
    # (the archive schema makes its PostgreSQL and MySQL/MariaDB pieces only when such a database is used)
    assert "rich" not in modules and "flask_limiter" not in modules and "limits" not in modules
    if databases.backend != "mariadb":
        assert "sqlalchemy.dialects.mysql" not in modules and "pymysql" not in modules
    if databases.backend != "postgres":
        assert "sqlalchemy.dialects.postgresql" not in modules and "psycopg2" not in modules


def test_serving_commands_still_get_the_whole_app(app, databases, tmp_path):
    done, modules = imported_by(["routes"], databases, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "/archives/<string:table_name>" in done.stdout and "flask_smorest" in modules


def test_every_command_is_in_the_table_of_its_module():
    """archiver.cli.COMMAND_MODULES names the module of every command the CLI has (a command run by
    name imports only its module): a command missing from it, or filed under another module, fails here."""
    import importlib

    from archiver import cli
    found = {command.name: name for name in cli.MODULES
             for command in importlib.import_module(f"archiver.cli.{name}").COMMANDS}
    assert found == cli.COMMAND_MODULES


@pytest.mark.parametrize("command", ["create-admin", "prune-security"])
def test_headless_commands_that_load_the_token_service_do_not_load_jwt(app, databases, command, tmp_path):
    done, modules = imported_by([command, "--help"], databases, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "flask_jwt_extended" not in modules and "jwt" not in modules
    assert f"archiver.cli.{cli_module(command)}" in modules
    assert "archiver.cli.jobs" not in modules


def test_the_group_help_lists_every_command(app, databases, tmp_path):
    done, _ = imported_by(["--help", "archive-now"], databases, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for command in ("archive-now", "create-admin", "first-run", "init-db", "prune-security", "purge-now",
                    "seed-demo", "db", "routes"):
        assert f"  {command} " in done.stdout, done.stdout
