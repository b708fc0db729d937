"""Database commands: init-db."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services import database


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the archive database's tables (safe to run again)."""
    database.init_db()
    click.echo("Initialized the archive database.")


COMMANDS = [init_db_command]
