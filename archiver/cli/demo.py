"""Demo commands: seed-demo."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..errors import DomainError
from ..services import demo


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Create demo tables with old rows in the SOURCE database, an admin and a user, and a policy per table.

    Safe to run again: existing tables with rows, users and policies are kept.
    Passwords are generated and printed once, when the user is created.
    """
    try:
        result = demo.seed_demo()
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo("Source tables (rows spread over the past %d days):" % demo.SPREAD_DAYS)
    for t in result.tables:
        if t.note:
            click.echo(f"  {t.name:<10} exists, {t.total} rows ({t.note})")
        else:
            click.echo(f"  {t.name:<10} {'created' if t.created else 'was empty'}, inserted {t.inserted} rows")
    click.echo("Users:")
    for u in result.users:
        scope = "all tables" if u.role == "admin" else (", ".join(u.tables) or "no tables")
        if u.password:
            click.echo(f"  {u.username:<10} role={u.role:<6} ({scope})  password: {u.password}")
        else:
            click.echo(f"  {u.username:<10} role={u.role:<6} ({scope})  already exists; "
                       "its password was set on the first run (not shown again)")
    if any(u.password for u in result.users):
        click.echo("  (passwords are shown only now; store them)")
    click.echo(f"Policies (archive after {demo.ARCHIVE_AFTER_DAYS} days, delete {demo.DELETE_AFTER_DAYS} days "
               "after archiving):")
    for name in result.policies_created:
        click.echo(f"  {name:<10} created")
    for name in result.policies_kept:
        click.echo(f"  {name:<10} exists; kept as is")
    for name, errors in result.policy_errors.items():
        problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        click.echo(f"  {name:<10} not created: {problems}", err=True)


COMMANDS = [seed_demo_command]
