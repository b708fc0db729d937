"""archiver: move old rows from a source database into an archive, on a schedule."""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from typing import Any, Mapping

from flask import Flask

from config import ConfigError, load_config, read_instance_file, validate_config

from .engine.connections import ConnectionSettings, configure_engine, same_database
from .extensions import db

log = logging.getLogger(__name__)


#: ``flask --app archiver <command>`` commands that serve no HTTP and run no scheduler: for them the
#: app is built without the API (OpenAPI schemas, blueprints) and the scheduler, which they never
#: use, so they start in a fraction of the time (tests/test_startup.py).
HEADLESS_COMMANDS = frozenset({"archive-now", "purge-now", "init-db", "create-admin", "seed-demo", "db",
                               "prune-security", "first-run"})
#: Of those, the ones that need the migrations (Flask-Migrate, Alembic).
MIGRATING_COMMANDS = frozenset({"init-db", "db"})


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory. ``test_config`` overrides settings (tests)."""
    app = Flask(__name__, instance_relative_config=True)
    command = cli_command()
    headless = command in HEADLESS_COMMANDS
    register_config(app, test_config)
    register_logging(app, command)
    register_extensions(app, migrations=not headless or command in MIGRATING_COMMANDS, tokens=not headless)
    if not headless:
        register_api(app)
        register_errors(app)
        register_blueprints(app)
        register_monitoring(app)
    register_cli(app, command)
    if not headless:
        register_scheduler(app)
    return app


def cli_command() -> str | None:
    """The ``flask`` command the Flask CLI builds the app for (None outside the CLI).

    The ``flask`` group builds the app before it resolves an app-defined command, so the
    command is read from its arguments: the first word that is not one of the group's own
    options (``--app``/``-A`` and ``--env-file``/``-e`` take a value). None when ``--help``
    comes first: the group's help lists every command.
    """
    import click
    from flask.cli import FlaskGroup

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    if not isinstance(ctx.command, FlaskGroup):
        return ctx.info_name
    words = iter(sys.argv[1:])
    for word in words:
        if word in ("--app", "-A", "--env-file", "-e"):
            next(words, None)
        elif word == "--help":
            return None
        elif not word.startswith("-"):
            return word
    return None


def register_config(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Settings from the environment, instance/config.py and ``test_config`` (highest first:
    test_config, instance/config.py, environment), all parsed and validated alike (config/)."""
    try:
        cfg = load_config(app.instance_path, instance=read_instance_file(app.instance_path),
                          overrides=test_config)
        validate_config(cfg)
    except ConfigError as exc:
        print(f"archiver: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.config.from_mapping(cfg)
    app.config["SQLALCHEMY_BINDS"] = {"source": app.config["SOURCE_DATABASE_URL"]}
    if app.config.get("REPLICA_DATABASE_URL"):  # read by the throttles (services/throttles.py)
        app.config["SQLALCHEMY_BINDS"]["replica"] = app.config["REPLICA_DATABASE_URL"]
    app.config.setdefault("API_SPEC_OPTIONS", {
        "security": [{"bearerAuth": []}],
        "info": {"description": "Archive old rows from a source database; browse them through JWT/RBAC."},
    })


def register_logging(app: Flask, command: str | None = None) -> None:
    """One handler on the root logger, text or JSON (LOG_FORMAT), the service's loggers at LOG_LEVEL
    (archiver/logs.py); ``flask db …`` also prints Alembic's progress."""
    from .logs import configure_logging
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    if command == "db":  # alembic.ini's logging is not applied when a handler is already there
        for name in ("alembic", "flask_migrate"):
            logging.getLogger(name).setLevel(logging.INFO)


def register_monitoring(app: Flask) -> None:
    """Metrics in ``app.extensions`` when METRICS_ENABLED (services/monitoring.py), ``GET /metrics``
    and one log line and count per request (api/monitoring.py)."""
    from .api.monitoring import register_monitoring as _register
    from .services.monitoring import init_metrics
    init_metrics(app)
    _register(app)


def register_extensions(app: Flask, *, migrations: bool = True, tokens: bool = True) -> None:
    """The database (both binds), and: with ``migrations`` Flask-Migrate, with ``tokens``
    Flask-JWT-Extended (only the HTTP layer signs or reads tokens)."""
    from .services.files import secure_sqlite_file
    from .services.passwords import init_gate
    secure_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"], own=True)
    secure_sqlite_file(app.config["SOURCE_DATABASE_URL"], own=False)
    init_gate(app)
    db.init_app(app)
    if migrations:  # the `flask db …` commands, and what init-db reads
        from .extensions import migrate
        migrate.init_app(app, db)
    if tokens:
        from .extensions import jwt
        jwt.init_app(app)
    settings = connection_settings(app.config)
    with app.app_context():
        # The archive (bind key None) is the service's own database, unless it is the source's too.
        shared = "source" not in db.engines or same_database(db.engines[None], db.engines["source"])
        for key, engine in db.engines.items():
            configure_engine(engine, replace(settings, owned=key is None and not shared))


def connection_settings(config: Mapping[str, Any]) -> ConnectionSettings:
    """The timeouts every database connection gets (DB_* settings)."""
    return ConnectionSettings(connect=config["DB_CONNECT_TIMEOUT_SECONDS"],
                              statement=config["DB_STATEMENT_TIMEOUT_SECONDS"],
                              lock=config["DB_LOCK_TIMEOUT_SECONDS"],
                              idle_in_transaction=config["DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS"],
                              network=config["DB_NETWORK_TIMEOUT_SECONDS"])


def register_api(app: Flask) -> None:
    from .api.openapi import openapi  # HTTP-only: imported here, not at module level
    from .api.ratelimit import init_limiter
    openapi.init_app(app)
    init_limiter(app)


def register_errors(app: Flask) -> None:
    from .api import register_error_handlers
    register_error_handlers(app)


def register_blueprints(app: Flask) -> None:
    from .api import register_blueprints as _register
    _register(app)


def register_cli(app: Flask, command: str | None = None) -> None:
    from .cli import register_cli as _register
    _register(app, command)


def register_scheduler(app: Flask) -> None:
    from .scheduler import init_scheduler
    init_scheduler(app)
