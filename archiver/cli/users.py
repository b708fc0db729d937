"""User commands: create-admin."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from ..errors import DomainError
from ..services import users as user_service


def stdin_is_tty() -> bool:
    """Whether the password should be prompted for (tests patch this)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_password() -> str:
    if stdin_is_tty():
        first = click.prompt("Password", hide_input=True, default="", show_default=False)
        second = click.prompt("Repeat password", hide_input=True, default="", show_default=False)
        if first != second:
            raise click.ClickException("The two passwords do not match.")
        return first
    try:
        line = sys.stdin.readline()
    except UnicodeDecodeError:
        raise click.ClickException("The password on stdin is not valid text in the terminal's encoding.") from None
    if not line:
        raise click.ClickException("No password given on stdin (expected it on the first line).")
    return line.rstrip("\r\n")


def _problem_text(err: DomainError) -> str:
    """The field messages of an InvalidInput (or the error's own message), on one line."""
    details = err.details if isinstance(err.details, dict) else {}
    messages = [m for msgs in details.values() for m in (msgs if isinstance(msgs, list) else [msgs])]
    return "; ".join(str(m) for m in messages) or err.message


@click.command("create-admin")
@click.argument("username")
@with_appcontext
def create_admin_command(username: str) -> None:
    """Create admin USERNAME, or reset (and reactivate) that admin's password.

    On a terminal the password is prompted for twice (hidden, must match);
    otherwise it is read from the first line of stdin, e.g.
    `printf '%s\\n' "$PW" | flask --app archiver create-admin alice`.
    It is never taken from the command line. Passwords must be 8 characters
    to 72 UTF-8 bytes.

    If USERNAME belongs to an existing non-admin user the command refuses
    (exit 1) rather than promoting it; change roles through PATCH /users/<id>.
    """
    problem = user_service.username_problem(username)
    if problem is not None:
        raise click.ClickException(problem)
    password = _read_password()
    try:
        user, created = user_service.create_or_reset_admin(username, password)
    except user_service.AdminBootstrapError as exc:
        raise click.ClickException(exc.message) from None
    except DomainError as exc:
        raise click.ClickException(_problem_text(exc)) from None
    except SQLAlchemyError:
        raise click.ClickException("The archive database is unreachable or not initialized "
                                   "(run `flask --app archiver init-db` first).") from None
    if created:
        click.echo(f"Created admin {user.username!r} (id {user.id}).")
    else:
        click.echo(f"Reset the password of admin {user.username!r} (id {user.id}); the account is active.")


COMMANDS = [create_admin_command]
