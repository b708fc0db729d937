"""Alembic environment of the archive database.

Targets the archive database only — the default bind, ``ARCHIVE_DATABASE_URL`` — and both of its
metadatas: the ORM models (``archiver.models``, ``db.metadata``) and the engine's Core tables
(``archiver.engine.schema``). The source bind is never connected to, let alone altered.

``init-db`` (``archiver/services/database.py``) runs these migrations on a connection of its own,
passed as ``config.attributes["connection"]``, so that deciding what to do and doing it happen in
one transaction; ``flask --app archiver db …`` (Flask-Migrate) connects here.
"""
from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

from archiver.services import database

config = context.config
# `flask db …` prints Alembic's progress (alembic.ini's logging); init-db says what it did itself, and a
# process whose logging is set up already (a test run, an embedding app) keeps its own.
if (config.config_file_name and config.attributes.get("configure_logger", True)
        and not logging.getLogger().handlers):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("alembic.env")


def _skip_empty_autogenerate(_context, _revision, directives) -> None:
    """`flask db migrate` with no schema change writes no empty revision file."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        log.info("No changes in schema detected.")


def _configure_args() -> dict:
    args = dict(current_app.extensions["migrate"].configure_args)
    args.setdefault("process_revision_directives", _skip_empty_autogenerate)
    args.update(database.migration_context_options())
    return args


def run_migrations_offline() -> None:
    """``flask db upgrade --sql``: write the SQL for the archive database's dialect."""
    context.configure(url=database.archive_engine().url, literal_binds=True, **_configure_args())
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, **_configure_args())
    with context.begin_transaction():
        context.run_migrations()
        database.check_foreign_keys(connection)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # init-db's connection, inside init-db's transaction
        _run(connection)
        return
    with database.archive_engine().connect() as connection, database.foreign_keys_off(connection):
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
