"""Flask CLI commands (``flask --app archiver …``), grouped by domain."""
from __future__ import annotations

import importlib

from flask import Flask

#: The module (of this package) that defines each command. A command run by name imports only its
#: own module (``archive-now`` needs neither the demo data nor the user commands); anything else
#: (``--help``, a mistyped name, the app built outside the CLI) registers them all.
#: tests/test_startup.py checks this table against the modules' COMMANDS.
COMMAND_MODULES = {
    "init-db": "database",
    "create-admin": "users",
    "seed-demo": "demo",
    "first-run": "demo",
    "archive-now": "jobs",
    "purge-now": "jobs",
    "prune-security": "security",
}
MODULES = ("database", "users", "demo", "jobs", "security")


def register_cli(app: Flask, command: str | None = None) -> None:
    """Add the project's commands to ``app.cli``: only ``command``'s module's when it is one of
    them, else every module's."""
    names = (COMMAND_MODULES[command],) if command in COMMAND_MODULES else MODULES
    for name in names:
        for cmd in importlib.import_module(f"{__name__}.{name}").COMMANDS:
            app.cli.add_command(cmd)
