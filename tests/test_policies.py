"""/config: policy validation against the source schema, create-or-update, and who may do what."""
from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import ArchivePolicy, User

GOOD = {"table_name": "orders", "archive_after_days": 30, "delete_after_days": 365}


@pytest.fixture
def source_tables(source_engine):
    """orders (PK, timestamp, varchar), events (timestamptz), nopk (no primary key), text_dates (TEXT dates)."""
    md = sa.MetaData()
    sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("status", sa.String(20)), sa.Column("placed_on", sa.Date),
             sa.Column("created_at", sa.DateTime))
    sa.Table("events", md, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("created_at", sa.DateTime(timezone=True)))
    sa.Table("nopk", md, sa.Column("id", sa.Integer), sa.Column("created_at", sa.DateTime))
    sa.Table("text_dates", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("created_at", sa.Text))
    md.create_all(source_engine)
    return md


@pytest.fixture
def admin(accounts):
    return accounts.admin("admin")


def stored_policies(app) -> list[ArchivePolicy]:
    with app.app_context():
        return list(db.session.execute(sa.select(ArchivePolicy)).scalars())


def test_create_then_update_keeps_one_row(app, client, admin, source_tables):
    resp = client.post("/config", json=GOOD, headers=admin)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["table_name"] == "orders"
    assert body["date_column"] == "created_at"
    assert body["batch_size"] is None and body["batch_mode"] == "adaptive"  # the default: adaptive, no ceiling
    assert body["enabled"] is True and body["custom_criteria"] is None
    assert body["updated_by"] == "admin"

    resp = client.post("/config/", json={**GOOD, "archive_after_days": 7, "batch_size": 250, "enabled": False,
                                         "date_column": "placed_on"}, headers=admin)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["id"] == body["id"]

    rows = stored_policies(app)
    assert len(rows) == 1
    assert (rows[0].archive_after_days, rows[0].batch_size, rows[0].enabled, rows[0].date_column) == \
        (7, 250, False, "placed_on")

    listed = client.get("/config/", headers=admin).get_json()["items"]
    assert [p["table_name"] for p in listed] == ["orders"]
    assert client.get("/config/orders", headers=admin).get_json()["archive_after_days"] == 7


def test_timestamptz_and_zero_day_bounds_are_accepted(client, admin, source_tables):
    resp = client.post("/config", json={"table_name": "events", "archive_after_days": 0,
                                        "delete_after_days": 36500, "batch_size": 50000}, headers=admin)
    assert resp.status_code == 201, resp.get_json()


@pytest.mark.parametrize("body, field", [
    ({**GOOD, "table_name": "no_such_table"}, "table_name"),
    ({**GOOD, "table_name": "nopk"}, "table_name"),
    ({**GOOD, "date_column": "no_such_column"}, "date_column"),
    ({**GOOD, "date_column": "status"}, "date_column"),
    ({**GOOD, "date_column": "id"}, "date_column"),
    ({**GOOD, "archive_after_days": -1}, "archive_after_days"),
    ({**GOOD, "archive_after_days": 36501}, "archive_after_days"),
    ({**GOOD, "archive_after_days": "30"}, "archive_after_days"),
    ({**GOOD, "archive_after_days": True}, "archive_after_days"),
    ({**GOOD, "delete_after_days": 0}, "delete_after_days"),
    ({**GOOD, "delete_after_days": -5}, "delete_after_days"),
    ({**GOOD, "batch_size": 0}, "batch_size"),
    ({**GOOD, "batch_size": 50001}, "batch_size"),
    ({**GOOD, "batch_size": 1.5}, "batch_size"),
    ({**GOOD, "custom_criteria": "x" * 4001}, "custom_criteria"),
    ({**GOOD, "custom_criteria": "1=1; DROP TABLE orders"}, "custom_criteria"),
    ({**GOOD, "role": "admin"}, "role"),
    ({**GOOD, "id": 5}, "id"),
    ({"archive_after_days": 30, "delete_after_days": 365}, "table_name"),
    ({"table_name": "orders", "delete_after_days": 365}, "archive_after_days"),
    ({**GOOD, "table_name": ""}, "table_name"),
    ({**GOOD, "enabled": "maybe"}, "enabled"),
])
def test_invalid_policy_is_400_naming_the_field_and_stores_nothing(app, client, admin, source_tables, body, field):
    resp = client.post("/config", json=body, headers=admin)
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert all(isinstance(m, str) and m for m in error["details"][field])
    assert stored_policies(app) == []


def test_error_messages_say_what_is_wrong(client, admin, source_tables, databases):
    details = client.post("/config", json={**GOOD, "table_name": "missing"}, headers=admin).get_json()["error"]["details"]
    assert details == {"table_name": ["Table not found in the source database"]}
    details = client.post("/config", json={**GOOD, "table_name": "nopk"}, headers=admin).get_json()["error"]["details"]
    assert "primary key" in details["table_name"][0]
    details = client.post("/config", json={**GOOD, "date_column": "status"}, headers=admin).get_json()["error"]["details"]
    assert "not a date/time column" in details["date_column"][0]


def test_failed_update_leaves_the_stored_policy_alone(app, client, admin, source_tables):
    assert client.post("/config", json=GOOD, headers=admin).status_code == 201
    resp = client.post("/config", json={**GOOD, "archive_after_days": 1, "date_column": "status"}, headers=admin)
    assert resp.status_code == 400
    (row,) = stored_policies(app)
    assert (row.archive_after_days, row.date_column) == (30, "created_at")


def test_text_date_columns_only_on_sqlite(client, admin, source_tables, databases):
    resp = client.post("/config", json={**GOOD, "table_name": "text_dates"}, headers=admin)
    if databases.backend == "sqlite":
        assert resp.status_code == 201, resp.get_json()
    else:
        assert resp.status_code == 400
        assert "date_column" in resp.get_json()["error"]["details"]


def test_blank_criteria_is_stored_as_null(client, admin, source_tables):
    resp = client.post("/config", json={**GOOD, "custom_criteria": "   "}, headers=admin)
    assert resp.status_code == 201
    assert resp.get_json()["custom_criteria"] is None


def test_get_and_delete(app, client, admin, source_tables):
    assert client.get("/config/orders", headers=admin).status_code == 404
    assert client.delete("/config/orders", headers=admin).status_code == 404
    client.post("/config", json=GOOD, headers=admin)
    client.post("/config", json={**GOOD, "table_name": "events"}, headers=admin)
    assert [p["table_name"] for p in client.get("/config/", headers=admin).get_json()["items"]] == ["events", "orders"]
    resp = client.delete("/config/orders", headers=admin)
    assert resp.status_code == 204 and resp.data == b""
    assert client.get("/config/orders", headers=admin).status_code == 404
    assert [p.table_name for p in stored_policies(app)] == ["events"]


def test_user_reads_only_granted_tables_and_nothing_else(client, accounts, admin, source_tables):
    analyst = accounts.user("analyst", tables=["orders"])
    # Granted but no policy yet: 404; not granted: 403 whether or not a policy exists.
    assert client.get("/config/orders", headers=analyst).status_code == 404
    assert client.get("/config/events", headers=analyst).status_code == 403
    assert client.post("/config", json=GOOD, headers=admin).status_code == 201
    assert client.post("/config", json={**GOOD, "table_name": "events"}, headers=admin).status_code == 201

    resp = client.get("/config/orders", headers=analyst)
    assert resp.status_code == 200 and resp.get_json()["table_name"] == "orders"
    resp = client.get("/config/events", headers=analyst)
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"

    for method, url, body in (("get", "/config/", None), ("get", "/config", None), ("post", "/config", GOOD),
                              ("post", "/config", {**GOOD, "table_name": "events"}),
                              ("delete", "/config/orders", None), ("delete", "/config/events", None)):
        resp = getattr(client, method)(url, json=body, headers=analyst)
        assert resp.status_code == 403, (method, url)
        assert resp.get_json()["error"]["code"] == "forbidden"

    # Admin still sees both, untouched.
    assert len(client.get("/config/", headers=admin).get_json()["items"]) == 2


def test_no_token_is_401(client, source_tables):
    for method, url in (("get", "/config/"), ("post", "/config"), ("get", "/config/orders"),
                        ("delete", "/config/orders")):
        resp = getattr(client, method)(url, json=GOOD if method == "post" else None)
        assert resp.status_code == 401, (method, url)
        assert resp.get_json()["error"]["code"] == "token_missing"


def test_demoted_admin_token_stops_working(app, client, admin, source_tables):
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == "admin")).scalar_one()
        user.role = "user"
        db.session.commit()
    assert client.post("/config", json=GOOD, headers=admin).status_code == 403
    assert client.get("/config/", headers=admin).status_code == 403
    assert client.get("/config/orders", headers=admin).status_code == 403


def test_revoked_table_permission_stops_reads(app, client, accounts, admin, source_tables):
    analyst = accounts.user("analyst", tables=["orders"])
    client.post("/config", json=GOOD, headers=admin)
    assert client.get("/config/orders", headers=analyst).status_code == 200
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == "analyst")).scalar_one()
        user.permissions = []
        db.session.commit()
    assert client.get("/config/orders", headers=analyst).status_code == 403


def test_timestamps_are_utc_with_offset(client, admin, source_tables):
    body = client.post("/config", json=GOOD, headers=admin).get_json()
    assert body["created_at"].endswith("+00:00") and body["updated_at"].endswith("+00:00")


# --- one policy check: the date column must hold dates the engine compares --------------

@pytest.fixture
def notes_table(source_engine):
    """``events`` with a real date column and a text column holding notes ("note 1", ...)."""
    md = sa.MetaData()
    events = sa.Table("events", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("created_at", sa.DateTime), sa.Column("note", sa.String(200)))
    md.create_all(source_engine)
    with source_engine.begin() as conn:
        conn.execute(events.insert(), [{"id": i, "created_at": datetime(2020, 1, i), "note": f"note {i}"}
                                       for i in range(1, 6)])
    return events


def test_a_text_column_of_notes_is_refused_naming_it_and_a_value_and_the_old_policy_still_runs(
        app, client, admin, notes_table, source_engine):
    good = {"table_name": "events", "archive_after_days": 30, "delete_after_days": 365, "batch_size": 2}
    assert client.post("/config", json=good, headers=admin).status_code == 201
    resp = client.post("/config", json={**good, "date_column": "note"}, headers=admin)
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "validation_error" and list(error["details"]) == ["date_column"]
    (message,) = error["details"]["date_column"]
    assert "'note'" in message and "'note 1'" in message, message  # the column and one offending value
    (row,) = stored_policies(app)
    assert row.date_column == "created_at"  # the rejected request changed nothing
    # ... and the stored policy still runs: every old row moves.
    from archiver.services import jobs
    with app.app_context():
        report = jobs.run_archive("events", trigger="test")
    assert report.ok and report.outcomes[0].rows == 5
    with source_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(notes_table)).scalar() == 0


def test_preview_runs_the_same_check(app, client, admin, notes_table):
    with app.app_context():
        db.session.add(ArchivePolicy(table_name="events", date_column="note", archive_after_days=30,
                                     delete_after_days=365))
        db.session.commit()
    resp = client.post("/config/events/preview", headers=admin)
    assert resp.status_code == 400
    assert "'note 1'" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)  # the one database without a date type
@pytest.mark.parametrize("ddl_type, values, accepted", [
    ("TEXT", ["2024-01-01", "2024-02-01 10:00:00", "2024-03-01T10:00:00Z"], True),
    ("VARCHAR(30)", ["2024-01-01", "2024-02-01 10:00:00+02:00"], True),
    ("TEXT", ["2024-01-01", "note 1"], False),
    ("DATETIME", ["2024-01-01", "note 1"], False),
    ("INTEGER", [1700000000], False),   # a Unix epoch is not a date
    ("TEXT", [], True),                  # nothing to sample: the declared type decides
    ("VARCHAR(20)", [], False),
])
def test_sqlite_text_dates_are_sampled(app, client, admin, source_engine, ddl_type, values, accepted):
    with source_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE t (id INTEGER PRIMARY KEY, created_at {ddl_type})")
        for i, v in enumerate(values, 1):
            conn.execute(sa.text("INSERT INTO t VALUES (:i, :v)"), {"i": i, "v": v})
    resp = client.post("/config", json={"table_name": "t", "archive_after_days": 1, "delete_after_days": 1},
                       headers=admin)
    assert (resp.status_code == 201) is accepted, resp.get_json()
    if not accepted:
        assert "created_at" in resp.get_json()["error"]["details"]["date_column"][0]


def test_batch_mode_fixed_needs_a_size_and_a_size_is_a_ceiling_when_adaptive(app, client, admin, source_tables):
    bad = client.post("/config", json={**GOOD, "batch_mode": "fixed"}, headers=admin)
    assert bad.status_code == 400 and "batch_size" in bad.get_json()["error"]["details"]
    assert client.post("/config", json={**GOOD, "batch_mode": "sometimes"}, headers=admin).status_code == 400
    fixed = client.post("/config", json={**GOOD, "batch_mode": "fixed", "batch_size": 500}, headers=admin)
    assert fixed.status_code == 201 and (fixed.get_json()["batch_mode"], fixed.get_json()["batch_size"]) == ("fixed", 500)
    capped = client.post("/config", json={**GOOD, "batch_size": 2000}, headers=admin)
    assert capped.status_code == 200 and capped.get_json()["batch_mode"] == "adaptive"
    from archiver.services.policies import policy_spec
    with app.app_context():
        (row,) = stored_policies(app)
        sizer = policy_spec(row).sizer()
    assert sizer.adaptive and sizer.ceiling == 2000 and sizer() == 1000
