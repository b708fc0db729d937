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


@click.command("first-run")
@click.option("--demo", "with_demo", is_flag=True,
              help="On an archive database without users, seed the demo data first.")
@click.option("--admin", "admin_username", default=demo.ADMIN_USERNAME, show_default=True,
              help="Name of the admin to create when there is none.")
@with_appcontext
def first_run_command(with_demo: bool, admin_username: str) -> None:
    """Make sure the archive database can be signed in to: create an admin if it has none.

    Prints the new admin's password once (`password: …`). With --demo, an archive database without
    users gets the demo data first (demo tables in the SOURCE database, users, policies). An
    archive database with an active admin is left as it is (reset a password with create-admin).
    """
    try:
        result = demo.first_run(demo=with_demo, admin_username=admin_username)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    if result.seeded is not None:
        click.echo("Demo data created:")
        for u in result.seeded.users:
            if u.password:
                scope = "all tables" if u.role == "admin" else (", ".join(u.tables) or "no tables")
                click.echo(f"  {u.username:<10} role={u.role:<6} ({scope})  password: {u.password}")
        click.echo(f"  tables {', '.join(t.name for t in result.seeded.tables)} with policies "
                   f"(archive after {demo.ARCHIVE_AFTER_DAYS} days)")
    elif result.created_admin is not None:
        u = result.created_admin
        click.echo(f"No admin in this archive database: created one.\n"
                   f"  {u.username:<10} role=admin  password: {u.password}")
    else:
        click.echo(f"Admin account(s) in this archive database: {', '.join(result.admins)} "
                   "(`scripts/archiver create-admin <name>` sets a new password)")


COMMANDS = [seed_demo_command, first_run_command]
