"""POST /archives/{table}/restore and engine.restore: round-trip types, conflicts, races, run records."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from archiver.engine.lease import TableLock
from archiver.engine.restore import ArchiveFilters, RestoreSelection, restore_rows
from archiver.extensions import db
from archiver.models import ArchiveRun
from tests.archive_helpers import (add_policy, archive_from_source, archive_synthetic, archived_ids, source_rows)


def typed_table(backend: str) -> sa.Table:
    cols = [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("big", sa.BigInteger),
        sa.Column("amount", sa.Numeric(14, 2)),
        sa.Column("ratio", sa.Float),
        sa.Column("flag", sa.Boolean),
        sa.Column("name", sa.Text),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("day", sa.Date),
        sa.Column("created_at", sa.DateTime),
    ]
    if backend == "postgres":
        cols += [sa.Column("at_tz", sa.DateTime(timezone=True)), sa.Column("uid", sa.Uuid),
                 sa.Column("doc", sa.JSON), sa.Column("docb", sa.dialects.postgresql.JSONB)]
    return sa.Table("typed", sa.MetaData(), *cols)


def typed_values(backend: str, n: int = 6) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        row = {
            "id": i, "big": 2**62 + i, "amount": Decimal(f"{1234567 + i}.{i:02d}"), "ratio": i / 3,
            "flag": i % 2 == 0, "name": f"näme \"{i}\", ☃\n", "blob": bytes([0, 255, i, 10, 13]),
            "day": date(2020, 2, i), "created_at": datetime(2020, 1, i, 12, 30, 15, 123456),
        }
        if backend == "postgres":
            row.update(at_tz=datetime(2020, 1, i, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
                       uid=uuid.uuid4(), doc={"a": [1, 2.5, None, "x"], "n": {"k": i}}, docb=[i, {"z": True}])
        if i == n:  # a row of NULLs except the key
            row = {k: (v if k == "id" else None) for k, v in row.items()}
        rows.append(row)
    return rows


@pytest.fixture
def typed(databases, source_engine):
    table = typed_table(databases.backend)
    table.metadata.create_all(source_engine)
    with source_engine.begin() as conn:
        conn.execute(table.insert(), typed_values(databases.backend))
    return table


def assert_same_rows(before: list[dict], after: list[dict]) -> None:
    assert len(before) == len(after)
    for b, a in zip(before, after):
        assert a.keys() == b.keys()
        for key in b:
            assert a[key] == b[key], (key, b[key], a[key])
            assert type(a[key]) is type(b[key]), (key, type(b[key]), type(a[key]))


def restore(client, headers, table, body):
    return client.post(f"/archives/{table}/restore", headers=headers, json=body)


def test_restore_round_trip_keeps_every_value_and_type(client, accounts, typed, source_engine, archive_engine, app):
    admin = accounts.admin()
    ids, original = archive_from_source(source_engine, archive_engine, "typed", date_column="created_at")
    assert source_rows(source_engine, "typed") == []

    resp = restore(client, admin, "typed", {"ids": ids})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["restored"] == len(original) and body["conflict_count"] == 0 and body["conflicts"] == []
    assert body["not_found"] == [] and body["failed_count"] == 0 and body["status"] == "succeeded"
    assert_same_rows(original, source_rows(source_engine, "typed"))
    assert archived_ids(archive_engine, "typed") == []

    with app.app_context():
        run = db.session.get(ArchiveRun, body["run_id"])
        assert (run.kind, run.table_name, run.trigger, run.status) == ("restore", "typed", "api:admin", "succeeded")
        assert run.rows_written == len(original) and run.rows_deleted == len(original)
        assert run.finished_at is not None


def test_restore_composite_primary_key_by_filter_and_all(client, accounts, source_engine, archive_engine):
    admin = accounts.admin()
    table = sa.Table("sales", sa.MetaData(), sa.Column("region", sa.String(8), primary_key=True),
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("total", sa.Numeric(10, 2)), sa.Column("created_at", sa.DateTime))
    table.metadata.create_all(source_engine)
    rows = [{"region": r, "id": i, "total": Decimal(f"{i}.50"), "created_at": datetime(2020, 1, i)}
            for r in ("eu", "us") for i in (1, 2, 3)]
    with source_engine.begin() as conn:
        conn.execute(table.insert(), rows)
    ids, original = archive_from_source(source_engine, archive_engine, "sales", date_column="created_at")

    resp = restore(client, admin, "sales", {"filters": {"source_pk": '["eu",2]'}})
    assert resp.status_code == 200 and resp.get_json()["restored"] == 1
    assert source_rows(source_engine, "sales") == [r for r in original if (r["region"], r["id"]) == ("eu", 2)]

    resp = restore(client, admin, "sales", {"filters": {"row_date_from": "2020-01-03"}})
    assert resp.get_json()["restored"] == 2  # eu/3 and us/3

    resp = restore(client, admin, "sales", {"all": True})
    assert resp.get_json()["restored"] == 3
    assert_same_rows(original, source_rows(source_engine, "sales"))
    assert archived_ids(archive_engine, "sales") == []


@pytest.fixture
def people(source_engine, archive_engine):
    table = sa.Table("people", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("email", sa.String(64), unique=True), sa.Column("name", sa.Text))
    table.metadata.create_all(source_engine)
    with source_engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "email": f"p{i}@x", "name": f"P{i}"} for i in range(1, 6)])
    ids, original = archive_from_source(source_engine, archive_engine, "people")
    return table, ids, original


def test_conflicting_key_is_reported_left_in_archive_and_source_not_overwritten(
        client, accounts, people, source_engine, archive_engine, app):
    table, ids, _ = people
    admin = accounts.admin()
    with source_engine.begin() as conn:  # a new row took key 2 meanwhile
        conn.execute(table.insert(), {"id": 2, "email": "new@x", "name": "Newcomer"})

    resp = restore(client, admin, "people", {"ids": ids})
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["restored"] == 4 and body["conflict_count"] == 1 and body["conflicts"] == ["2"]
    assert body["status"] == "partial"
    assert archived_ids(archive_engine, "people") == [ids[1]]
    by_id = {r["id"]: r for r in source_rows(source_engine, "people")}
    assert by_id[2] == {"id": 2, "email": "new@x", "name": "Newcomer"}
    assert sorted(by_id) == [1, 2, 3, 4, 5]
    with app.app_context():
        run = db.session.get(ArchiveRun, body["run_id"])
        assert run.status == "partial" and run.rows_conflict == 1 and run.rows_written == 4

    again = restore(client, admin, "people", {"all": True}).get_json()  # still a conflict, nothing lost
    assert again["restored"] == 0 and again["conflicts"] == ["2"]


def test_identical_row_already_in_source_only_drops_the_archive_copy(client, accounts, people, source_engine,
                                                                      archive_engine):
    """A restore that crashed after committing the source insert left the row in both places."""
    table, ids, original = people
    admin = accounts.admin()
    with source_engine.begin() as conn:
        conn.execute(table.insert(), original[0])
    body = restore(client, admin, "people", {"ids": ids[:2]}).get_json()
    assert body["restored"] == 1 and body["already_present"] == 1 and body["conflict_count"] == 0
    assert archived_ids(archive_engine, "people") == ids[2:]


def test_other_constraint_failures_are_isolated_row_by_row(client, accounts, people, source_engine, archive_engine):
    table, ids, original = people
    admin = accounts.admin()
    with source_engine.begin() as conn:  # a different key holds person 3's unique email
        conn.execute(table.insert(), {"id": 30, "email": "p3@x", "name": "Squatter"})
    body = restore(client, admin, "people", {"all": True}).get_json()
    assert body["restored"] == 4 and body["failed_count"] == 1 and body["failed"] == ["3"]
    assert body["conflict_count"] == 0 and body["status"] == "partial"
    assert archived_ids(archive_engine, "people") == [ids[2]]


def test_row_inserted_concurrently_during_restore_becomes_a_conflict(app, people, source_engine, archive_engine):
    """The key check passes, then another writer inserts the same key before our INSERT (IntegrityError race)."""
    table, ids, _ = people
    fired = []

    def racer(conn, cursor, statement, parameters, context, executemany):
        if not fired and statement.lstrip().upper().startswith("INSERT INTO PEOPLE"):
            fired.append(True)
            with source_engine.begin() as other:
                other.execute(table.insert(), {"id": 4, "email": "racer@x", "name": "Racer"})

    event.listen(source_engine, "before_cursor_execute", racer)
    try:
        result = restore_rows(source_engine, archive_engine, "people", RestoreSelection())
    finally:
        event.remove(source_engine, "before_cursor_execute", racer)
    assert fired
    assert result.restored == 4 and result.conflict_count == 1 and result.conflicts == ["4"]
    assert archived_ids(archive_engine, "people") == [ids[3]]
    assert {r["id"]: r["name"] for r in source_rows(source_engine, "people")}[4] == "Racer"


def test_engine_batches_ids_and_filters_intersect(app, source_engine, archive_engine, people):
    table, ids, _ = people
    result = restore_rows(source_engine, archive_engine, "people",
                          RestoreSelection(ids=tuple(ids[:3]) + (999_999,), filters=ArchiveFilters(source_pk="2")),
                          batch_size=2)
    assert result.restored == 1 and sorted(result.not_found) == sorted([ids[0], ids[2], 999_999])
    assert result.batches == 1
    result = restore_rows(source_engine, archive_engine, "people", RestoreSelection(), batch_size=2)
    assert result.restored == 4 and result.batches == 2 and result.rows_read == 4


def test_not_found_ids_include_rows_of_other_tables(client, accounts, people, archive_engine):
    _, ids, _ = people
    admin = accounts.admin()
    foreign = archive_synthetic(archive_engine, "events", 1)
    body = restore(client, admin, "people", {"ids": [ids[0], foreign[0], 123456]}).get_json()
    assert body["restored"] == 1 and sorted(body["not_found"]) == sorted([foreign[0], 123456])
    assert archived_ids(archive_engine, "events") == foreign


def test_missing_source_table_is_409_and_archive_untouched(client, accounts, archive_engine, app):
    admin = accounts.admin()
    ids = archive_synthetic(archive_engine, "gone", 3)
    resp = restore(client, admin, "gone", {"all": True})
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "conflict" and "gone" in err["message"] and "does not exist" in err["message"]
    assert archived_ids(archive_engine, "gone") == ids
    with app.app_context():
        assert db.session.query(ArchiveRun).count() == 0


def test_restore_of_unknown_table_is_404_for_admin(client, accounts):
    admin = accounts.admin()
    assert restore(client, admin, "nope", {"all": True}).status_code == 404


@pytest.mark.parametrize("body", [
    {},
    {"ids": []},
    {"filters": {}},
    {"ids": list(range(1, 10_002))},
    {"ids": ["1"]},
    {"ids": [0]},
    {"ids": [True]},
    {"all": True, "ids": [1]},
    {"all": True, "filters": {"source_pk": "1"}},
    {"all": "yes please"},
    {"ids": [1], "force": True},
    {"filters": {"archived_from": "soon"}},
    {"filters": {"archived_from": "2024-02-01", "archived_to": "2024-01-01"}},
    {"filters": {"limit": 5}},
    [1, 2],
])
def test_bad_restore_bodies_are_400(client, accounts, app, body):
    admin = accounts.admin()
    add_policy(app, "people")
    resp = restore(client, admin, "people", body)
    assert resp.status_code == 400, body
    assert resp.get_json()["error"]["code"] == "validation_error"


def test_restore_is_recorded_as_failed_when_the_source_breaks(client, accounts, people, source_engine, app):
    """A non-constraint database error aborts the run (500) but the run record says failed."""
    table, ids, _ = people
    admin = accounts.admin()

    def breaker(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO PEOPLE"):
            raise sa.exc.OperationalError(statement, parameters, Exception("disk on fire"))

    event.listen(source_engine, "before_cursor_execute", breaker)
    try:
        resp = restore(client, admin, "people", {"all": True})
    finally:
        event.remove(source_engine, "before_cursor_execute", breaker)
    assert resp.status_code == 500
    assert "fire" not in resp.get_data(as_text=True)
    with app.app_context():
        run = db.session.query(ArchiveRun).one()
        assert run.status == "failed" and run.error.startswith("restore failed: ")
        assert "INSERT" not in run.error and "fire" not in run.error
    assert len(source_rows(source_engine, "people")) == 0


def test_restore_waits_for_no_archive_run_and_releases_the_lease(client, accounts, people, archive_engine, app):
    _, ids, _ = people
    admin = accounts.admin()
    runner = TableLock(archive_engine, "people", holder="archive-runner")
    assert runner.acquire("archive")
    runner.attach(99)
    resp = restore(client, admin, "people", {"all": True})
    error = resp.get_json()["error"]
    assert resp.status_code == 409 and error["code"] == "table_held" and "archive run 99" in error["message"]
    assert error["details"]["holder"]["run_id"] == 99 and error["details"]["holder"]["pid"] == runner.pid
    assert archived_ids(archive_engine, "people") == ids
    with app.app_context():
        assert db.session.query(ArchiveRun).count() == 0
    runner.release()

    assert restore(client, admin, "people", {"ids": ids[:1]}).status_code == 200
    assert runner.current_holder() is None  # the restore gave the lease back
    assert runner.acquire()
    runner.release()


def test_a_restore_left_running_by_a_crash_is_closed_by_the_next(client, accounts, people, app):
    admin = accounts.admin()
    with app.app_context():
        from archiver.services.runs import start_run
        stale = start_run("restore", "people", "api:admin")
    body = restore(client, admin, "people", {"all": True}).get_json()
    with app.app_context():
        assert db.session.get(ArchiveRun, stale).status == "abandoned"
        assert db.session.get(ArchiveRun, body["run_id"]).status == "succeeded"
