"""Database commands: init-db (the schema's migrations themselves: ``flask --app archiver db …``)."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services import database

#: init-db's exit status when it refuses a database it does not recognise (nothing was changed):
#: retrying cannot help, so scripts/docker-entrypoint.sh stops at once on it.
EXIT_NOT_RECOGNISED = 3


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the archive schema, or upgrade it to the newest revision (safe to run again).

    A database made before schema migrations is recognised and stamped, never recreated; one whose
    tables are partly there or unknown is refused with exit status 3, unchanged.
    """
    try:
        result = database.init_db()
    except database.SchemaNotRecognised as exc:
        click.echo(f"archiver: init-db: {exc}", err=True)
        raise SystemExit(EXIT_NOT_RECOGNISED) from None
    except database.InitDbBusy as exc:
        click.echo(f"archiver: init-db: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(result.describe())


COMMANDS = [init_db_command]
