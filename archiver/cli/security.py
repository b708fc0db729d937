"""Security housekeeping: prune-security."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ..services import retention


@click.command("prune-security")
@with_appcontext
def prune_security_command() -> None:
    """Delete audit events older than AUDIT_RETENTION_DAYS (0 keeps them) and expired login sessions.

    The scheduler does this every day after the purge; run it by hand (or from cron) when the
    scheduler is off.
    """
    deleted = retention.prune_security_records()
    days = current_app.config["AUDIT_RETENTION_DAYS"]
    kept = f"older than {days} days" if days else "none: AUDIT_RETENTION_DAYS is 0"
    click.echo(f"Deleted {deleted['audit_events']} audit event(s) ({kept}) and "
               f"{deleted['token_families']} expired login session(s).")


COMMANDS = [prune_security_command]
