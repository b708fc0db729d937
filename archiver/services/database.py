"""The archive schema: create or upgrade it with the Alembic migrations; check that both databases answer.

The archive database's schema is versioned by the migrations in ``archiver/migrations/``
(Flask-Migrate). ``init_db()`` brings any archive database to the newest revision ("head"):

* a database with an ``alembic_version`` table is upgraded from the revision it records;
* a database holding none of the service's tables gets the whole schema (every migration in turn);
* a database made by ``create_all`` before the schema was versioned — exactly the tables and
  columns of revision ``0001``, no ``alembic_version`` — is stamped at ``0001`` (its tables are
  kept as they are) and then upgraded;
* anything else (some of the service's tables but not all, other columns, a revision this code
  does not know) is refused with :class:`SchemaNotRecognised`: nothing is created, dropped or
  altered, the operator decides.

It all happens on one connection, in one transaction where the database has transactional DDL
(PostgreSQL, SQLite; MariaDB commits each DDL statement), holding a lock so that two processes
starting at once do not both migrate.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, ContextManager, Iterator

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .. import models  # noqa: F401 - registers the ORM tables on db.metadata
from ..engine import schema as engine_schema
from ..engine.connections import altering_tables, dangling_references, schema_lock
from ..engine.errors import SchemaLockBusy
from .. import extensions
from ..extensions import db

#: Where the migrations live: archiver/migrations/ (see extensions.MIGRATIONS_DIR).
MIGRATIONS_DIR = extensions.MIGRATIONS_DIR
#: The first revision: the schema as ``create_all`` made it before migrations existed.
BASELINE = "0001"

#: The tables and columns of a database made by ``create_all`` before the schema was versioned
#: (revision 0001). Frozen: later revisions change the models, never this.
BASELINE_TABLES: dict[str, frozenset[str]] = {
    "users": frozenset({"id", "username", "password_hash", "role", "active", "created_at", "updated_at"}),
    "table_permissions": frozenset({"id", "user_id", "table_name"}),
    "archive_policies": frozenset({"id", "table_name", "date_column", "archive_after_days", "delete_after_days",
                                   "custom_criteria", "batch_size", "enabled", "created_at", "updated_at",
                                   "updated_by"}),
    "archive_runs": frozenset({"id", "kind", "table_name", "trigger", "status", "dry_run", "started_at",
                               "finished_at", "rows_read", "rows_written", "rows_deleted", "rows_conflict",
                               "batches", "error"}),
    "archived_rows": frozenset({"id", "table_name", "source_pk", "payload", "row_date", "archived_at", "run_id"}),
    "table_leases": frozenset({"table_name", "kind", "holder", "acquired_at", "expires_at"}),
}


class SchemaNotRecognised(RuntimeError):
    """The archive database holds a schema init-db will not touch (nothing was changed)."""


class InitDbBusy(RuntimeError):
    """Another init-db kept the archive database locked too long (nothing was changed; try again)."""


@dataclass(frozen=True)
class InitResult:
    """What init_db() did: ``created`` (empty database), ``stamped`` (a pre-migration database,
    recognised and stamped at the baseline, then upgraded), ``upgraded``, or ``current`` (nothing)."""

    action: str
    from_revision: str | None
    to_revision: str

    def describe(self) -> str:
        if self.action == "created":
            return f"Created the archive schema (revision {self.to_revision})."
        if self.action == "stamped":
            tail = "" if self.to_revision == BASELINE else f", then upgraded to {self.to_revision}"
            return (f"Recognised an archive database made before schema migrations: stamped revision "
                    f"{BASELINE}{tail}; every row kept.")
        if self.action == "upgraded":
            return f"Upgraded the archive schema from revision {self.from_revision} to {self.to_revision}."
        return f"The archive schema is up to date (revision {self.to_revision})."


# --- what the migrations target -------------------------------------------------------------------

def archive_engine() -> sa.Engine:
    """The archive database (the default bind): the only database the migrations touch."""
    return db.engines[None]


def target_metadata() -> list[sa.MetaData]:
    """Both metadatas of the archive schema: the ORM models and the engine's Core tables."""
    return [db.metadata, engine_schema.metadata]


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate looks only at the service's own tables: a table in the archive database that no
    model describes (another application's, or the source's when both URLs name one database) is
    never proposed for dropping. Removing one of ours is a migration written by hand."""
    return not (type_ == "table" and reflected and compare_to is None)


def migration_context_options() -> dict[str, Any]:
    """``context.configure`` options shared by env.py and the tests' comparisons."""
    return {"target_metadata": target_metadata(), "include_object": include_object}


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Flask-Migrate's Alembic config for this app; with ``connection``, env.py runs on it."""
    config = extensions.migrate.get_config()
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=4)
def _script(directory: str) -> ScriptDirectory:
    # Parsed once per process: every test's app runs init_db().
    return ScriptDirectory(directory)


def script_directory() -> ScriptDirectory:
    return _script(MIGRATIONS_DIR)


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None
    return head


# --- init-db ---------------------------------------------------------------------------------------

def init_db() -> InitResult:
    """Create or upgrade the archive schema to the newest revision (idempotent; see the module doc).

    Raises :class:`SchemaNotRecognised` (having changed nothing) for a database it will not touch,
    :class:`InitDbBusy` when another init-db holds the database for 5 minutes.
    """
    engine = archive_engine()
    head = head_revision()
    with engine.connect() as conn, foreign_keys_off(conn):
        with _init_transaction(conn):
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None:
                if current == head:
                    return InitResult("current", current, head)
                _check_known(current)
                _upgrade(conn)
                return InitResult("upgraded", current, head)
            if not _service_tables(conn):
                _upgrade(conn)
                return InitResult("created", None, head)
            _check_baseline(conn)
            MigrationContext.configure(conn).stamp(script_directory(), BASELINE)
            _upgrade(conn)
            return InitResult("stamped", None, head)


def foreign_keys_off(conn: sa.Connection) -> ContextManager[None]:
    """Around a migration's transaction: on SQLite, foreign keys off (altering a table re-creates it,
    and dropping a referenced table would delete the rows that reference it), on again afterwards;
    :func:`check_foreign_keys` checks the keys before that transaction commits. A no-op elsewhere."""
    return altering_tables(conn)


def check_foreign_keys(conn: sa.Connection) -> None:
    """Before a migration commits: every foreign key still points at a row (where it could not)."""
    broken = dangling_references(conn)
    if broken:
        raise RuntimeError(f"the migration left rows whose foreign key points nowhere: {broken[:5]}")


def _upgrade(conn: sa.Connection) -> None:
    """``alembic upgrade head`` on ``conn`` (what ``command.upgrade`` does, with the script directory
    parsed once per process rather than on every call)."""
    script = script_directory()
    with EnvironmentContext(alembic_config(conn), script, destination_rev="head",
                            fn=lambda rev, _context: script._upgrade_revs("head", rev)):
        script.run_env()


def _check_known(revision: str) -> None:
    try:
        script_directory().get_revision(revision)
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        raise SchemaNotRecognised(
            f"The archive database is at schema revision {revision!r}, which this version of archiver "
            "does not know (was it migrated by a newer version?). Nothing was changed.") from None


def _service_tables(conn: sa.Connection) -> set[str]:
    ours = set(BASELINE_TABLES)
    for md in target_metadata():
        ours |= set(md.tables)
    return ours & set(sa.inspect(conn).get_table_names())


def _check_baseline(conn: sa.Connection) -> None:
    """Refuse unless the database holds exactly the pre-migration schema (revision 0001's tables and
    columns)."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    problems = [f"table {t} is missing" for t in sorted(set(BASELINE_TABLES) - present)]
    problems += [f"table {t} is not part of revision {BASELINE}" for t in sorted(_service_tables(conn) -
                                                                             set(BASELINE_TABLES))]
    for table in sorted(set(BASELINE_TABLES) & present):
        columns = {c["name"] for c in inspector.get_columns(table)}
        if missing := sorted(BASELINE_TABLES[table] - columns):
            problems.append(f"{table} lacks {', '.join(missing)}")
        if extra := sorted(columns - BASELINE_TABLES[table]):
            problems.append(f"{table} has unknown columns {', '.join(extra)}")
    if problems:
        raise SchemaNotRecognised(
            "The archive database holds some of archiver's tables but no schema revision (no alembic_version "
            "table), and they are not the schema archiver created before migrations: "
            + "; ".join(problems) + ". init-db changed nothing and drops nothing: restore the database from "
            "a backup, or make it match a revision by hand and record it with "
            "`flask --app archiver db stamp <revision>`.")


#: The lock init-db takes (its name; each backend makes its own lock of it).
INIT_DB_LOCK = "archiver init-db"
#: How long init-db waits for another one before giving up.
INIT_DB_WAIT_SECONDS = 300


@contextlib.contextmanager
def _init_transaction(conn: sa.Connection) -> Iterator[None]:
    """One transaction, init-db's alone between processes (``Backend.schema_lock``: a transaction
    advisory lock on PostgreSQL, a named lock held across the transaction on MariaDB/MySQL, where
    DDL commits, the write lock ``BEGIN IMMEDIATE`` takes on SQLite)."""
    try:
        with schema_lock(conn, INIT_DB_LOCK, INIT_DB_WAIT_SECONDS):
            yield
    except SchemaLockBusy:
        raise InitDbBusy("Another init-db has held the archive database for 5 minutes; nothing was changed.") \
            from None


def ping(bind_key: str | None) -> None:
    """Raise if the database behind ``bind_key`` does not answer ``SELECT 1``."""
    with db.engines[bind_key].connect() as conn:
        conn.execute(sa.text("SELECT 1"))
