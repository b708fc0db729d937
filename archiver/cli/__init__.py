"""Flask CLI commands (``flask --app archiver …``), grouped by domain."""
from __future__ import annotations

from flask import Flask

from . import database, demo, jobs, security, users


def register_cli(app: Flask) -> None:
    for module in (database, users, demo, jobs, security):
        for command in module.COMMANDS:
            app.cli.add_command(command)
