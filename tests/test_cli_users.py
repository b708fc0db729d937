"""flask create-admin: create or reset an admin; the password comes from stdin or a double prompt."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from archiver.cli import users as cli_users
from archiver.extensions import db
from archiver.models import User
from tests.auth_support import MAX_PASSWORD, PASSWORD, TOO_LONG_PASSWORD, login, user_count


def create_admin(runner, username: str, stdin: str | None):
    return runner.invoke(args=["create-admin", username], input=stdin)


def row(app, username: str) -> User | None:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()
        if user is not None:
            db.session.expunge(user)
        return user


def test_stdin_of_the_cli_runner_is_not_a_terminal(runner):
    # the non-tty path below is the one the runner exercises unless a test says otherwise
    result = create_admin(runner, "root", PASSWORD + "\n")
    assert result.exit_code == 0
    assert "Password" not in result.output


def test_create_admin_from_stdin_creates_an_admin_who_can_log_in(app, client, runner):
    result = create_admin(runner, "root", PASSWORD + "\nignored second line\n")
    assert result.exit_code == 0, result.output
    assert "Created admin 'root'" in result.output
    assert PASSWORD not in result.output
    user = row(app, "root")
    assert user.role == "admin" and user.active
    assert user.password_hash.startswith("$2b$04$")
    tokens = login(client, "root").get_json()
    assert client.get("/users", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200


def test_second_run_resets_the_password(app, client, runner):
    assert create_admin(runner, "root", PASSWORD + "\n").exit_code == 0
    first_id = row(app, "root").id
    result = create_admin(runner, "root", "new-password-456\n")
    assert result.exit_code == 0, result.output
    assert "Reset the password" in result.output
    assert row(app, "root").id == first_id
    assert user_count(app) == 1
    assert login(client, "root").status_code == 401
    assert login(client, "root", "new-password-456").status_code == 200


def test_reset_reactivates_a_deactivated_admin(app, client, runner, accounts):
    accounts.create("root", role="admin", active=False)
    result = create_admin(runner, "root", "new-password-456\n")
    assert result.exit_code == 0, result.output
    assert row(app, "root").active
    assert login(client, "root", "new-password-456").status_code == 200


def test_existing_non_admin_is_refused_not_promoted(app, client, runner, accounts):
    accounts.create("alice", tables=["orders"])
    result = create_admin(runner, "alice", "new-password-456\n")
    assert result.exit_code != 0
    assert "not an admin" in result.output
    user = row(app, "alice")
    assert user.role == "user"
    assert login(client, "alice").status_code == 200  # old password unchanged
    assert login(client, "alice", "new-password-456").status_code == 401


@pytest.mark.parametrize("password, message", [
    ("1234567", "at least 12 characters"),
    (TOO_LONG_PASSWORD, "at most 72 bytes"),
    ("", "at least 12 characters"),
    ("qwerty123456", "too common"),
    ("x-root-admin-x", "must not contain the username"),
    (" " * 14, "one character repeated or only spaces"),
])
def test_password_out_of_bounds_fails_without_creating(app, runner, password, message):
    result = create_admin(runner, "root", password + "\n")
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert user_count(app) == 0


def test_password_out_of_bounds_on_reset_keeps_the_old_one(app, client, runner):
    assert create_admin(runner, "root", PASSWORD + "\n").exit_code == 0
    assert create_admin(runner, "root", "short\n").exit_code != 0
    assert login(client, "root").status_code == 200


def test_password_of_72_bytes_is_accepted(app, client, runner):
    result = create_admin(runner, "root", MAX_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert login(client, "root", MAX_PASSWORD).status_code == 200


def test_empty_stdin_fails(app, runner):
    result = create_admin(runner, "root", "")
    assert result.exit_code != 0
    assert "No password" in result.output
    assert user_count(app) == 0


def test_bad_username_fails(app, runner):
    result = create_admin(runner, "no spaces", PASSWORD + "\n")
    assert result.exit_code != 0
    assert "Username" in result.output
    assert user_count(app) == 0


def test_password_is_never_taken_from_argv(app, runner):
    result = runner.invoke(args=["create-admin", "root", PASSWORD])
    assert result.exit_code != 0
    assert user_count(app) == 0


def test_help_states_the_refusal_and_stdin(runner):
    result = runner.invoke(args=["create-admin", "--help"])
    assert result.exit_code == 0
    assert "refuses" in result.output and "stdin" in result.output


# --- the terminal path ------------------------------------------------------------

@pytest.fixture
def tty(monkeypatch):
    monkeypatch.setattr(cli_users, "stdin_is_tty", lambda: True)


def test_terminal_prompts_twice_and_creates(app, client, runner, tty):
    result = create_admin(runner, "root", f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password" in result.output and "Repeat password" in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert login(client, "root").status_code == 200


def test_terminal_mismatch_fails(app, runner, tty):
    result = create_admin(runner, "root", f"{PASSWORD}\n{PASSWORD}x\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert user_count(app) == 0


def test_terminal_short_password_fails(app, runner, tty):
    result = create_admin(runner, "root", "short\nshort\n")
    assert result.exit_code != 0
    assert "at least 12 characters" in result.output
    assert user_count(app) == 0


def test_undecodable_password_on_stdin_fails_cleanly(app, runner):
    result = create_admin(runner, "root", b"\xff\xfe\xfdpassword\n")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert user_count(app) == 0
