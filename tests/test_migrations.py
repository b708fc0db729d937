"""Schema migrations of the archive database (archiver/migrations/), on SQLite, PostgreSQL and MariaDB.

* The migrations make exactly the schema create_all makes (reflected and compared, with the DDL text
  where the server keeps it), and Alembic's ``compare_metadata`` finds no difference between the
  models and the head revision: a model change that ships without its migration fails here.
* Every upgrade step keeps every row. A database is built at the step's first revision, filled,
  upgraded, and compared row by row. The first step starts from a database made before migrations
  existed (revision 0001's tables, no ``alembic_version``: what create_all made) and goes through
  ``init-db``; a step whose target is the head goes through ``init-db`` too, the others through
  ``flask db upgrade <rev>``. A new revision joins ``STEPS`` by itself; give ``fill()`` realistic
  rows for a new table, and compare transformed values by hand in a step that changes data.
* ``init-db`` creates, stamps, upgrades, is a no-op when run again, and refuses — changing nothing —
  a database it does not recognise.
"""
from __future__ import annotations

import json
import shutil
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from archiver.cli.database import EXIT_NOT_RECOGNISED
from archiver.engine import schema as engine_schema
from archiver.engine.connections import schema_lock
from archiver.extensions import db, migrate
from archiver.services import database
from archiver.services.passwords import hash_password
from tests.app_support import make_app
from tests.engine_support import sqlite_only

SCRIPT = ScriptDirectory(database.MIGRATIONS_DIR)
#: Every revision, oldest first.
REVISIONS = [s.revision for s in reversed(list(SCRIPT.walk_revisions("base", "heads")))]
HEAD = REVISIONS[-1]
#: A database made by create_all before migrations: revision 0001's schema without alembic_version.
PRE = "pre-migration"
#: (from, to) of every upgrade a deployed database can take.
STEPS = [(PRE, HEAD)] + list(zip(REVISIONS, REVISIONS[1:]))

PASSWORD = "correct-horse-battery"  # meets the password rules (as tests/app_support.py)
T0 = datetime(2024, 3, 1, 8, 30, 15, tzinfo=timezone.utc)


def test_the_revisions_form_one_line_from_the_baseline():
    assert REVISIONS[0] == database.BASELINE
    assert SCRIPT.get_heads() == [HEAD]  # one head: no unmerged branches
    assert database.head_revision() == HEAD


# --- helpers ----------------------------------------------------------------------------------------

@pytest.fixture
def bare_app(databases):
    """An app on the test's throwaway databases, with no archive schema yet."""
    app = make_app(databases)
    yield app
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def archive(app) -> sa.Engine:
    with app.app_context():
        return db.engines[None]


def create_all_schema(engine: sa.Engine) -> None:
    """What init-db did before migrations: create_all of both metadatas."""
    db.metadata.create_all(engine)
    engine_schema.metadata.create_all(engine)


def build_at(app, revision: str) -> None:
    """Bring the (empty) archive database to ``revision``; PRE: revision 0001 without alembic_version."""
    target = database.BASELINE if revision == PRE else revision
    with app.app_context(), archive(app).connect() as conn:
        command.upgrade(database.alembic_config(conn), target)
        if revision == PRE:
            conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.commit()


def current_revision(app) -> str | None:
    with archive(app).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def init_db(app) -> Any:
    return app.test_cli_runner().invoke(args=["init-db"])


def reflect(conn: sa.Connection) -> sa.MetaData:
    md = sa.MetaData()
    md.reflect(conn)
    md.remove(md.tables["alembic_version"]) if "alembic_version" in md.tables else None
    return md


def json_value(column: sa.Column, value: Any) -> Any:
    """A JSON document for ``column``: as it is for a JSON type, as text where the server reflects
    JSON as text (MariaDB: LONGTEXT)."""
    return value if isinstance(column.type, sa.JSON) else json.dumps(value)


def generic_value(column: sa.Column, n: int, conn: sa.Connection) -> Any:
    """A value of ``column``'s type for a NOT NULL column the samples below do not know (one added by a
    later revision); ``n`` keeps unique columns unique."""
    for fk in column.foreign_keys:
        return conn.execute(sa.select(fk.column).limit(1)).scalar_one()
    t = column.type
    if isinstance(t, sa.Boolean):
        return bool(n % 2)
    if isinstance(t, sa.Integer):
        return n
    if isinstance(t, sa.Numeric):
        return Decimal(f"{n}.5")
    if isinstance(t, sa.DateTime):
        return T0 + timedelta(minutes=n)
    if isinstance(t, sa.Date):
        return date(2024, 1, 1) + timedelta(days=n)
    if isinstance(t, sa.JSON):
        return {"n": n}
    if isinstance(t, sa.String):
        return f"v{n}"[: t.length or None]
    raise AssertionError(f"teach generic_value() a value for {column.table.name}.{column.name} ({t!r})")


ARCHIVED = {  # source_pk -> payload: case-distinct keys, a composite key, unicode, big numbers, nesting
    "1": {"id": 1, "status": "closed", "amount": "12.50", "note": None},
    "2": {"id": 2, "status": "closed", "amount": "0.01", "note": "naïve café ✓"},
    "a": {"id": "a", "doc": {"k": [1, 2, {"deep": True}]}},
    "A": {"id": "A", "doc": {"k": []}},
    '["eu",42]': {"region": "eu", "seq": 42, "big": 9007199254740993, "raw": "AP8="},
}


def fill(app) -> None:
    """Realistic rows in every table of the archive database, at whatever revision it is."""
    with archive(app).connect() as conn:
        md = reflect(conn)
        counter = iter(range(1, 10_000))

        def insert(name: str, rows: list[dict[str, Any]]) -> None:
            table = md.tables[name]
            done = []
            for row in rows:
                row = {k: v for k, v in row.items() if k in table.c}
                for col in table.c:
                    if (col.name not in row and not col.nullable and col.server_default is None
                            and not (col.primary_key and col.autoincrement in (True, "auto")
                                     and isinstance(col.type, sa.Integer))):
                        row[col.name] = generic_value(col, next(counter), conn)
                done.append(row)
            for row in done:  # one by one: ids come in order
                conn.execute(table.insert(), row)

        stamp = {"created_at": T0, "updated_at": T0 + timedelta(days=1)}
        insert("users", [
            {"username": "admin", "password_hash": hash_password(PASSWORD, 4), "role": "admin", "active": True, **stamp},
            {"username": "emilie", "password_hash": hash_password(PASSWORD, 4), "role": "user", "active": True, **stamp},
            {"username": "gone", "password_hash": hash_password(PASSWORD, 4), "role": "user", "active": False, **stamp},
        ])
        users = md.tables["users"]
        ids = dict(conn.execute(sa.select(users.c.username, users.c.id)).all())
        insert("table_permissions", [{"user_id": ids["emilie"], "table_name": "orders"},
                                     {"user_id": ids["gone"], "table_name": "events"}])
        insert("archive_policies", [
            {"table_name": "orders", "date_column": "created_at", "archive_after_days": 30, "delete_after_days": 365,
             "custom_criteria": "status = 'closed' AND amount < 100", "batch_size": 500, "enabled": True,
             "updated_by": "admin", **stamp},
            {"table_name": "events", "date_column": "happened_at", "archive_after_days": 0, "delete_after_days": 1,
             "custom_criteria": None, "batch_size": 1000, "enabled": False, "updated_by": None, **stamp},
        ])
        insert("archive_runs", [
            {"kind": "archive", "table_name": "orders", "trigger": "scheduler", "status": "succeeded", "dry_run": False,
             "started_at": T0, "finished_at": T0 + timedelta(seconds=3), "rows_read": 2**40, "rows_written": 5,
             "rows_deleted": 5, "rows_conflict": 0, "batches": 1, "error": None},
            {"kind": "purge", "table_name": "events", "trigger": "api:admin", "status": "failed", "dry_run": True,
             "started_at": T0, "finished_at": None, "rows_read": 0, "rows_written": 0, "rows_deleted": 0,
             "rows_conflict": 0, "batches": 0, "error": "source table 'events' does not exist"},
        ])
        runs = md.tables["archive_runs"]
        run_id = conn.execute(sa.select(sa.func.min(runs.c.id))).scalar_one()
        rows_table = md.tables["archived_rows"]
        insert("archived_rows", [
            {"table_name": "orders", "source_pk": pk, "payload": json_value(rows_table.c.payload, payload),
             "row_date": T0 - timedelta(days=90 + i), "archived_at": T0 + timedelta(hours=i), "run_id": run_id}
            for i, (pk, payload) in enumerate(ARCHIVED.items())])
        if "table_leases" in md.tables:  # until 0005 (replaced by table_locks)
            insert("table_leases", [{"table_name": "orders", "kind": "archive", "holder": "host:123:abc",
                                     "acquired_at": T0, "expires_at": T0 + timedelta(minutes=10)}])
        if "table_locks" in md.tables:
            insert("table_locks", [{"table_name": "orders", "holder": "host:123:abc", "kind": "archive",
                                    "run_id": run_id, "host": "host", "pid": 123, "acquired_at": T0,
                                    "heartbeat_at": T0 + timedelta(seconds=5)}])
        for table in md.sorted_tables:  # tables of later revisions that no sample above knows
            if not conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
                insert(table.name, [{}, {}])
        conn.commit()


def normal(value: Any) -> Any:
    if isinstance(value, datetime):  # naive on SQLite and MariaDB: UTC by the service's rule
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


def dump(app) -> dict[str, dict[tuple, dict[str, Any]]]:
    """Every row of every table, by primary key."""
    with archive(app).connect() as conn:
        out = {}
        for table in reflect(conn).sorted_tables:
            pk = [c.name for c in table.primary_key.columns]
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings().all()
            out[table.name] = {tuple(r[c] for c in pk): {k: normal(v) for k, v in r.items()} for r in rows}
        return out


#: Tables a revision drops on purpose (their rows are no data): 0005 replaced the expiring leases
#: (a claim of an in-flight run of the old version) by table_locks.
DROPPED_ON_PURPOSE = {"table_leases"}


def assert_rows_kept(before: dict, after: dict) -> None:
    """Every row before is there after, with the same value in every column both revisions have."""
    for table, rows in before.items():
        if table in DROPPED_ON_PURPOSE and table not in after:
            continue
        assert table in after, f"table {table} is gone"
        assert set(after[table]) == set(rows), f"rows of {table} differ"
        for key, row in rows.items():
            new = after[table][key]
            assert {c: v for c, v in row.items() if c in new} == {c: new[c] for c in row if c in new}, (table, key)


# --- every upgrade keeps every row ------------------------------------------------------------------

@pytest.mark.parametrize("before, after", STEPS, ids=[f"{a}->{b}" for a, b in STEPS])
def test_upgrade_step_keeps_every_row(bare_app, before, after):
    build_at(bare_app, before)
    fill(bare_app)
    rows = dump(bare_app)
    assert sum(map(len, rows.values())) >= 15

    if after == HEAD:  # what a deployment runs
        result = init_db(bare_app)
        assert result.exit_code == 0, result.output
        assert ("Recognised an archive database made before schema migrations" if before == PRE
                else f"Upgraded the archive schema from revision {before}") in result.output
    else:
        result = bare_app.test_cli_runner().invoke(args=["db", "upgrade", after])
        assert result.exit_code == 0, result.output
    assert current_revision(bare_app) == after
    assert_rows_kept(rows, dump(bare_app))
    if after == HEAD:
        assert_service_works_on_them(bare_app)


def assert_service_works_on_them(app) -> None:
    """The migrated rows through the API: logins, grants, archived payloads, and new ids after the old."""
    client = app.test_client()

    def token(username: str) -> dict[str, str]:
        resp = client.post("/auth/login", json={"username": username, "password": PASSWORD})
        assert resp.status_code == 200, resp.get_json()
        return {"Authorization": f"Bearer {resp.get_json()['access_token']}"}

    admin = token("admin")
    page = client.get("/archives/orders?limit=100", headers=admin).get_json()
    assert {item["source_pk"]: item["payload"] for item in page["items"]} == ARCHIVED
    user = token("emilie")
    assert client.get("/archives/orders", headers=user).status_code == 200
    assert client.get("/archives/events", headers=user).status_code == 403
    assert client.post("/auth/login", json={"username": "gone", "password": PASSWORD}).status_code == 401
    created = client.post("/users/", json={"username": "newcomer", "password": PASSWORD}, headers=admin)
    assert created.status_code == 201, created.get_json()
    with app.app_context():
        users = db.session.execute(sa.text("SELECT id FROM users WHERE username <> 'newcomer'")).scalars().all()
    assert created.get_json()["id"] > max(users)


# --- the schema: migrations == create_all == models ----------------------------------------------------

def schema_snapshot(engine: sa.Engine) -> dict[str, Any]:
    """The archive schema as the server reports it: reflected by SQLAlchemy, plus the server's own DDL
    (SQLite's stored CREATE statements, MariaDB's SHOW CREATE TABLE, PostgreSQL's catalogue)."""
    insp = sa.inspect(engine)
    tables = sorted(t for t in insp.get_table_names() if t != "alembic_version")
    snap: dict[str, Any] = {}
    for t in tables:
        snap[t] = {
            "columns": [(c["name"], repr(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"),
                         c.get("comment")) for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t),
            "unique": sorted(map(repr, insp.get_unique_constraints(t))),
            "indexes": sorted(repr({**ix, "dialect_options": {k: str(v) for k, v in ix.get("dialect_options", {}).items()}})
                              for ix in insp.get_indexes(t)),
            "fks": sorted(map(repr, insp.get_foreign_keys(t))),
            "checks": sorted(map(repr, insp.get_check_constraints(t))),
        }
    with engine.connect() as conn:
        dialect = engine.dialect.name
        if dialect == "sqlite":
            snap["ddl"] = sorted((kind, name, table, _sqlite_definitions(sql)) for kind, name, table, sql in
                                 conn.exec_driver_sql(
                                     "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name <> 'alembic_version' "
                                     "AND tbl_name <> 'alembic_version'").all())
        elif dialect in ("mysql", "mariadb"):
            for t in tables:
                ddl = conn.exec_driver_sql(f"SHOW CREATE TABLE `{t}`").one()[1]
                lines = [line.rstrip(",") for line in ddl.splitlines()]
                # Index order follows creation order, which create_all takes from a set: compare as a set.
                snap[t]["ddl"] = ([line for line in lines if "KEY" not in line]
                                  + sorted(line for line in lines if "KEY" in line))
        else:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
            snap["catalogue"] = [
                conn.execute(sa.text(
                    "SELECT table_name, ordinal_position, column_name, data_type, udt_name, character_maximum_length,"
                    " is_nullable, column_default, collation_name, is_identity FROM information_schema.columns"
                    " WHERE table_schema = :s AND table_name <> 'alembic_version' ORDER BY 1, 2"), {"s": schema}).all(),
                conn.execute(sa.text(
                    "SELECT rel.relname, con.conname, con.contype, pg_get_constraintdef(con.oid) FROM pg_constraint con"
                    " JOIN pg_class rel ON rel.oid = con.conrelid JOIN pg_namespace n ON n.oid = rel.relnamespace"
                    " WHERE n.nspname = :s AND rel.relname <> 'alembic_version' ORDER BY 1, 2"), {"s": schema}).all(),
                [(t, i, d.replace(f"{schema}.", "")) for t, i, d in conn.execute(sa.text(
                    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s"
                    " AND tablename <> 'alembic_version' ORDER BY 1, 2"), {"s": schema}).all()],
                conn.execute(sa.text(
                    "SELECT sequence_name, data_type, start_value, increment FROM information_schema.sequences"
                    " WHERE sequence_schema = :s ORDER BY 1"), {"s": schema}).all(),
            ]
    return snap


def _sqlite_definitions(sql: str | None) -> object:
    """A table's or an index's stored SQL as its definitions, whatever the layout: a column SQLite's
    ALTER TABLE … ADD appended, or a table Alembic rebuilt (its name then quoted), reads the same."""
    if sql is None:
        return None
    head, paren, body = sql.partition("(")
    if not paren or not head.upper().startswith("CREATE TABLE"):
        return " ".join(sql.split())
    parts, depth, current = [], 0, ""
    for ch in body.rsplit(")", 1)[0]:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        current += ch
    parts.append(current)
    return ("CREATE TABLE " + head.split(None, 2)[2].strip().strip('"'), [" ".join(p.split()) for p in parts])


@pytest.mark.parametrize("how", ["init-db", "db upgrade"])
def test_migrations_make_exactly_what_create_all_makes(bare_app, how):
    """Source database: today's create_all; archive database: the migrations. Same schema."""
    with bare_app.app_context():
        create_all_schema(db.engines["source"])
    args = ["init-db"] if how == "init-db" else ["db", "upgrade"]
    result = bare_app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    with bare_app.app_context():
        made_by_create_all, migrated = schema_snapshot(db.engines["source"]), schema_snapshot(db.engines[None])
    assert set(made_by_create_all) >= set(database.BASELINE_TABLES) - DROPPED_ON_PURPOSE
    assert migrated == made_by_create_all
    assert current_revision(bare_app) == HEAD


def test_models_and_head_migration_agree(bare_app):
    """Alembic's autogenerate finds nothing to do at head: every model change ships with a migration."""
    with bare_app.app_context():
        database.init_db()
        with db.engines[None].connect() as conn:
            context = MigrationContext.configure(conn, opts=database.migration_context_options())
            assert compare_metadata(context, database.target_metadata()) == []
    result = bare_app.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output


def test_models_without_a_migration_are_caught(bare_app):
    """The check above is not vacuous: a column that no migration adds is reported."""
    with bare_app.app_context():
        database.init_db()
        changed = sa.MetaData()
        for table in engine_schema.metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables["archived_rows"].append_column(sa.Column("checksum", sa.String(64)))
        with db.engines[None].connect() as conn:
            context = MigrationContext.configure(conn, opts={**database.migration_context_options(),
                                                             "target_metadata": [db.metadata, changed]})
            diffs = compare_metadata(context, [db.metadata, changed])
    assert [(d[0], d[2], d[3].name) for d in diffs] == [("add_column", "archived_rows", "checksum")]


# --- init-db -------------------------------------------------------------------------------------------

def test_init_db_creates_a_fresh_database_at_head(bare_app):
    result = init_db(bare_app)
    assert result.exit_code == 0, result.output
    assert f"Created the archive schema (revision {HEAD})" in result.output
    assert current_revision(bare_app) == HEAD
    with bare_app.app_context():
        assert set(database.BASELINE_TABLES) - DROPPED_ON_PURPOSE <= set(sa.inspect(db.engines[None]).get_table_names())
        # The source bind is never touched.
        assert sa.inspect(db.engines["source"]).get_table_names() == []


def test_init_db_twice_is_a_no_op(bare_app):
    assert init_db(bare_app).exit_code == 0
    fill(bare_app)
    with bare_app.app_context():
        schema, rows = schema_snapshot(db.engines[None]), dump(bare_app)
    again = init_db(bare_app)
    assert again.exit_code == 0, again.output
    assert f"The archive schema is up to date (revision {HEAD})" in again.output
    with bare_app.app_context():
        assert schema_snapshot(db.engines[None]) == schema
    assert dump(bare_app) == rows
    assert current_revision(bare_app) == HEAD


def assert_refused(app, *phrases: str) -> None:
    with app.app_context():
        schema = schema_snapshot(db.engines[None])
    rows = dump(app)
    result = init_db(app)
    assert result.exit_code == EXIT_NOT_RECOGNISED, result.output
    for phrase in phrases:
        assert phrase in result.output
    assert "changed nothing" in result.output or "Nothing was changed" in result.output
    with app.app_context():
        assert schema_snapshot(db.engines[None]) == schema
    assert dump(app) == rows


def test_init_db_refuses_a_partial_schema(bare_app):
    with bare_app.app_context():
        engine = db.engines[None]
        db.metadata.create_all(engine, tables=[db.metadata.tables["users"]])
        engine_schema.metadata.create_all(engine, tables=[engine_schema.archived_rows])
        with engine.begin() as conn:
            conn.execute(engine_schema.archived_rows.insert(), {
                "table_name": "orders", "source_pk": "1", "payload": {"id": 1}, "archived_at": T0})
    assert_refused(bare_app, "table archive_policies is missing", "table table_leases is missing")
    assert current_revision(bare_app) is None


def test_init_db_refuses_unknown_columns(bare_app):
    build_at(bare_app, PRE)
    fill(bare_app)
    with archive(bare_app).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)")
    assert_refused(bare_app, "users has unknown columns nickname")


def test_init_db_refuses_a_revision_it_does_not_know(bare_app):
    assert init_db(bare_app).exit_code == 0
    with archive(bare_app).begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dfeed'")
    assert_refused(bare_app, "revision 'f00dfeed'", "newer version")


def test_init_db_leaves_tables_of_others_alone(bare_app):
    """A database holding only someone else's tables gets the schema beside them."""
    with archive(bare_app).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE their_notes (id INTEGER PRIMARY KEY, body VARCHAR(20))")
        conn.exec_driver_sql("INSERT INTO their_notes VALUES (1, 'keep me')")
    result = init_db(bare_app)
    assert result.exit_code == 0, result.output
    assert "Created the archive schema" in result.output
    with archive(bare_app).connect() as conn:
        assert conn.exec_driver_sql("SELECT body FROM their_notes").all() == [("keep me",)]
    with bare_app.app_context(), db.engines[None].connect() as conn:
        context = MigrationContext.configure(conn, opts=database.migration_context_options())
        assert compare_metadata(context, database.target_metadata()) == []


def test_the_baseline_refuses_to_run_over_a_pre_migration_database(bare_app, caplog):
    """`flask db upgrade` on a database init-db would stamp: a clear error, nothing changed."""
    build_at(bare_app, PRE)
    fill(bare_app)
    rows = dump(bare_app)
    result = bare_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 1
    assert "Run `flask --app archiver init-db`, which recognises it" in caplog.text
    assert dump(bare_app) == rows
    assert current_revision(bare_app) is None


def test_concurrent_init_db_migrates_once(bare_app):
    """Two processes starting at once (compose replicas): one migrates, the other waits and finds it done."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with bare_app.app_context():
                results.append(database.init_db())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(r.action for r in results) == ["created", "current"]
    assert current_revision(bare_app) == HEAD


def test_init_db_gives_up_when_another_holds_the_schema_lock_for_the_whole_wait(bare_app, monkeypatch):
    """init-db waits INIT_DB_WAIT_SECONDS for another process changing the schema (each backend's own
    lock: advisory lock, GET_LOCK, SQLite's write lock), then says so, having changed nothing."""
    monkeypatch.setattr(database, "INIT_DB_WAIT_SECONDS", 1)
    engine = archive(bare_app)
    with engine.connect() as holder, schema_lock(holder, database.INIT_DB_LOCK, 1):
        with bare_app.app_context(), pytest.raises(database.InitDbBusy, match="nothing was changed"):
            database.init_db()
    assert current_revision(bare_app) is None
    assert not set(sa.inspect(engine).get_table_names()) & {"archive_runs", "users", "archived_rows"}
    with bare_app.app_context():  # the lock free again: the same connection pool migrates
        assert database.init_db().action == "created"
    assert current_revision(bare_app) == HEAD


@sqlite_only
def test_sqlite_table_rebuilds_keep_the_rows_that_reference_them(bare_app):
    """SQLite alters a table by copying it and dropping the old one (batch mode). Migrations run with
    foreign keys off, so rebuilding users keeps table_permissions' rows; with them on, the drop would
    have deleted those rows through ON DELETE CASCADE."""
    assert init_db(bare_app).exit_code == 0
    fill(bare_app)
    rows = dump(bare_app)

    def rebuild_users(conn: sa.Connection) -> None:
        with conn.begin():
            with Operations(MigrationContext.configure(conn)).batch_alter_table("users", recreate="always"):
                pass
            database.check_foreign_keys(conn)

    with archive(bare_app).connect() as conn, database.foreign_keys_off(conn):
        rebuild_users(conn)
    assert dump(bare_app) == rows
    with archive(bare_app).connect() as conn:  # the control: foreign keys on (every connection's default)
        rebuild_users(conn)
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert dump(bare_app)["table_permissions"] == {}


NEXT = f"{int(HEAD) + 1:04d}"
NEXT_REVISION = '''"""A later revision, for the test below: widen users.username (a table rebuild on SQLite) and add a column.

Revision ID: {next}
Revises: {head}
"""
from alembic import op
import sqlalchemy as sa

revision = "{next}"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.alter_column("username", type_=sa.String(80), existing_type=sa.String(64), existing_nullable=False)
        batch.add_column(sa.Column("nickname", sa.String(40), nullable=False, server_default="none"))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("nickname")
        batch.alter_column("username", type_=sa.String(64), existing_type=sa.String(80), existing_nullable=False)
'''


@pytest.fixture
def next_revision(tmp_path, monkeypatch) -> str:
    """The migrations plus one more revision after the head (the next issue's migration, rehearsed):
    init-db's upgrade path."""
    directory = tmp_path / "migrations"
    shutil.copytree(database.MIGRATIONS_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "versions" / f"{NEXT}_wider_usernames.py").write_text(
        NEXT_REVISION.replace("{next}", NEXT).replace("{head}", HEAD))
    monkeypatch.setattr(database, "MIGRATIONS_DIR", str(directory))
    monkeypatch.setattr(migrate, "directory", str(directory))
    return NEXT


@pytest.mark.parametrize("start", [PRE, HEAD])
def test_init_db_upgrades_to_a_new_head_keeping_every_row(bare_app, next_revision, start):
    build_at(bare_app, start)
    fill(bare_app)
    rows = dump(bare_app)
    result = init_db(bare_app)
    assert result.exit_code == 0, result.output
    assert (f"stamped revision 0001, then upgraded to {NEXT}" if start == PRE
            else f"Upgraded the archive schema from revision {HEAD} to {NEXT}") in result.output
    assert current_revision(bare_app) == next_revision
    after = dump(bare_app)
    assert_rows_kept(rows, after)
    assert {r["nickname"] for r in after["users"].values()} == {"none"}
    with archive(bare_app).connect() as conn:
        username = next(c for c in sa.inspect(conn).get_columns("users") if c["name"] == "username")
        assert username["type"].length == 80
    again = init_db(bare_app)
    assert f"up to date (revision {NEXT})" in again.output


def test_policies_stored_before_adaptive_batches_keep_their_fixed_size(bare_app):
    build_at(bare_app, "0002")
    fill(bare_app)
    with archive(bare_app).connect() as conn:
        before = dict(conn.execute(sa.text("SELECT table_name, batch_size FROM archive_policies")).all())
    assert before
    assert init_db(bare_app).exit_code == 0
    with archive(bare_app).connect() as conn:
        after = {t: (size, mode) for t, size, mode in conn.execute(
            sa.text("SELECT table_name, batch_size, batch_mode FROM archive_policies")).all()}
    assert after == {t: (size, "fixed") for t, size in before.items()}
