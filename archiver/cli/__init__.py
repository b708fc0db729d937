"""Flask CLI commands (``flask --app archiver …``), grouped by domain."""
from __future__ import annotations

from flask import Flask

from . import database


def register_cli(app: Flask) -> None:
    for command in database.COMMANDS:
        app.cli.add_command(command)
