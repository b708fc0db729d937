"""First run, as a newcomer meets it: `first-run` makes sure the archive database it serves can be signed
in to (what scripts/run.sh calls), and `scripts/archiver` runs the documented commands without an
activated virtualenv, from any directory."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import User

ROOT = Path(__file__).resolve().parent.parent
PASSWORD_LINE = re.compile(r"^\s+(\S+)\s+role=(\w+)\s.*password: (\S+)$", re.M)


def login(client, username: str, password: str) -> int:
    return client.post("/auth/login", json={"username": username, "password": password}).status_code


def test_an_archive_database_without_admin_gets_one_whose_password_works(app, runner, client):
    first = runner.invoke(args=["first-run"])
    assert first.exit_code == 0, first.output
    (name, role, password), = PASSWORD_LINE.findall(first.output)
    assert (name, role) == ("admin", "admin")
    assert login(client, "admin", password) == 200
    again = runner.invoke(args=["first-run"])
    assert again.exit_code == 0 and not PASSWORD_LINE.findall(again.output)
    assert "Admin account(s) in this archive database: admin" in again.output


def test_demo_only_on_an_empty_archive_database(app, runner, client, source_engine, accounts):
    seeded = runner.invoke(args=["first-run", "--demo"])
    assert seeded.exit_code == 0, seeded.output
    passwords = {m[0]: m[2] for m in PASSWORD_LINE.findall(seeded.output)}
    assert set(passwords) == {"admin", "analyst"}
    assert login(client, "analyst", passwords["analyst"]) == 200
    assert "orders" in sa.inspect(source_engine).get_table_names()


def test_no_demo_data_where_users_exist_and_a_taken_name_is_not_reused(app, runner, accounts, source_engine):
    accounts.create("admin")   # a plain user called "admin": no admin yet
    out = runner.invoke(args=["first-run", "--demo"])
    assert out.exit_code == 0, out.output
    assert "orders" not in sa.inspect(source_engine).get_table_names()   # the source is left alone
    (name, role, _), = PASSWORD_LINE.findall(out.output)
    assert role == "admin" and name.startswith("admin-")
    with app.app_context():
        assert db.session.execute(sa.select(User.role).where(User.username == "admin")).scalar_one() == "user"


@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)  # a process, not a database test
def test_scripts_archiver_runs_the_commands_from_any_directory(databases, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "FLASK_"))}
    env["PATH"] = "/usr/bin:/bin"          # no activated virtualenv: no `flask` on the PATH
    env.update(ARCHIVER_ENV="testing", SOURCE_DATABASE_URL=databases.source_url,
               ARCHIVE_DATABASE_URL=databases.archive_url, JWT_SECRET_KEY="x" * 40)
    run = subprocess.run([str(ROOT / "scripts" / "archiver"), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for command in ("init-db", "create-admin", "first-run", "archive-now", "seed-demo"):
        assert command in run.stdout
    init = subprocess.run([str(ROOT / "scripts" / "archiver"), "init-db"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    first = subprocess.run([str(ROOT / "scripts" / "archiver"), "first-run"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "password: " in first.stdout, first.stderr
