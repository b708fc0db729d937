"""The audit trail: every audited action writes exactly one record with the right actor and details;
GET /audit (admin) filters, pages and exports it; retention prunes it."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import AuditEvent
from archiver.models._types import utcnow
from archiver.services import audit
from archiver.services.audit import Actor
from tests.app_support import PASSWORD
from tests.archive_helpers import archive_synthetic, known_tables, source_rows
from tests.auth_support import assert_error, bearer, login

ADDRESS = "203.0.113.9"


def events(app, action: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        stmt = sa.select(AuditEvent).order_by(AuditEvent.id)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        found = list(db.session.execute(stmt).scalars())
        db.session.expunge_all()
        return found


def only(app, action: str) -> AuditEvent:
    found = events(app, action)
    assert len(found) == 1, [(e.action, e.details) for e in found]
    return found[0]


def count(app) -> int:
    return len(events(app))


@pytest.fixture
def admin(accounts):
    uid = accounts.create("root", role="admin")
    return uid, accounts.headers("root")


@pytest.fixture
def orders_source(source_engine):
    table = sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("status", sa.String(20)), sa.Column("created_at", sa.DateTime))
    table.create(source_engine)
    return table


def post(client, url, headers=None, **kwargs):
    return client.post(url, headers=headers, environ_overrides={"REMOTE_ADDR": ADDRESS}, **kwargs)


# --- authentication ------------------------------------------------------------------------------

def test_login_success_and_failure_are_recorded_with_the_address(app, client, accounts):
    uid = accounts.create("alice")
    assert post(client, "/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
    ok = only(app, "auth.login")
    assert (ok.actor_id, ok.actor, ok.address, ok.outcome, ok.target) == (uid, "alice", ADDRESS, "success",
                                                                          f"user:{uid}")
    assert post(client, "/auth/login", json={"username": "alice", "password": "wrong-password"}).status_code == 401
    assert post(client, "/auth/login", json={"username": "ghost", "password": "wrong-password"}).status_code == 401
    failed = [e for e in events(app, "auth.login") if e.outcome == "failure"]
    assert [(e.actor_id, e.actor, e.address) for e in failed] == [(None, None, ADDRESS)] * 2
    assert [e.details for e in failed] == [{"username": "alice", "reason": "wrong password"},
                                           {"username": "ghost", "reason": "unknown user"}]


def test_failed_login_is_logged(client, caplog):
    with caplog.at_level("WARNING", logger="archiver.services.auth"):
        post(client, "/auth/login", json={"username": "ghost\nforged line", "password": "wrong-password"})
    (record,) = [r for r in caplog.records if "failed login" in r.getMessage()]
    assert "'ghost\\nforged line'" in record.getMessage() and ADDRESS in record.getMessage()


def test_logout_and_password_change_are_recorded(app, client, accounts):
    uid = accounts.create("alice")
    tokens = login(client, "alice").get_json()
    assert post(client, "/auth/logout", headers=bearer(tokens["refresh_token"])).status_code == 204
    out = only(app, "auth.logout")
    assert (out.actor_id, out.address, out.details) == (uid, ADDRESS, {"token_type": "refresh"})
    tokens = login(client, "alice").get_json()
    body = {"old_password": "not-the-password", "new_password": "another-long-phrase"}
    assert post(client, "/auth/password", headers=bearer(tokens["access_token"]), json=body).status_code == 400
    body["old_password"] = PASSWORD
    assert post(client, "/auth/password", headers=bearer(tokens["access_token"]), json=body).status_code == 200
    changes = events(app, "auth.password_change")
    assert [(e.outcome, e.actor_id, e.target) for e in changes] == [("failure", uid, f"user:{uid}"),
                                                                   ("success", uid, f"user:{uid}")]


def test_signup_is_recorded_taken_or_not(app, client, signup_enabled):
    body = {"username": "newbie", "password": PASSWORD}
    assert post(client, "/auth/signup", json=body).status_code == 202
    assert post(client, "/auth/signup", json=body).status_code == 202
    first, second = events(app, "auth.signup")
    assert first.outcome == "success" and first.address == ADDRESS and first.details == {"username": "newbie"}
    assert second.outcome == "failure" and second.details == {"username": "newbie", "reason": "username taken"}


# --- users and grants -------------------------------------------------------------------------------

def test_user_changes_are_recorded_with_before_and_after(app, client, admin):
    admin_id, headers = admin
    known_tables(app, "orders", "invoices")
    resp = post(client, "/users", headers=headers, json={"username": "carol", "password": PASSWORD,
                                                        "permissions": ["orders"]})
    assert resp.status_code == 201
    carol = resp.get_json()["id"]
    created = only(app, "user.create")
    assert (created.actor_id, created.actor, created.address, created.target) == (admin_id, "root", ADDRESS,
                                                                                  f"user:{carol}")
    assert created.details == {"username": "carol", "role": "user", "permissions": ["orders"]}

    assert client.put(f"/users/{carol}/permissions", headers=headers,
                      json={"permissions": ["orders", "invoices"]}).status_code == 200
    grants = only(app, "user.permissions")
    assert grants.details == {"username": "carol", "before": ["orders"], "after": ["invoices", "orders"]}

    assert client.patch(f"/users/{carol}", headers=headers, json={"role": "admin"}).status_code == 200
    assert client.delete(f"/users/{carol}", headers=headers).status_code == 200
    assert client.delete(f"/users/{carol}", headers=headers).status_code == 200  # idempotent: no change
    updates = events(app, "user.update")
    assert [e.details for e in updates] == [
        {"username": "carol", "before": {"role": "user", "active": True}, "after": {"role": "admin", "active": True}},
        {"username": "carol", "before": {"role": "admin", "active": True},
         "after": {"role": "admin", "active": False}}]
    assert all(e.actor_id == admin_id for e in updates)


def test_refused_changes_record_nothing(app, client, admin):
    _, headers = admin
    before = count(app)
    assert client.post("/users", headers=headers, json={"username": "x", "password": PASSWORD}).status_code == 400
    assert client.patch("/users/999", headers=headers, json={"role": "admin"}).status_code == 404
    assert count(app) == before


def test_create_admin_reset_is_recorded_as_the_cli(app, runner, accounts):
    uid = accounts.create("root", role="admin")
    assert runner.invoke(args=["create-admin", "root"], input="a-reset-passphrase\n").exit_code == 0
    reset = only(app, "user.password_reset")
    assert (reset.actor, reset.actor_id, reset.target) == ("cli", None, f"user:{uid}")


# --- policies -----------------------------------------------------------------------------------------

def test_policy_changes_are_recorded_with_before_and_after(app, client, admin, orders_source):
    admin_id, headers = admin
    body = {"table_name": "orders", "archive_after_days": 30, "delete_after_days": 365}
    assert client.post("/config", headers=headers, json=body).status_code == 201
    created = only(app, "policy.create")
    assert created.actor_id == admin_id and created.target == "orders" and created.details["before"] is None
    assert created.details["after"]["archive_after_days"] == 30
    assert client.post("/config", headers=headers, json=body).status_code == 200  # unchanged: nothing to record
    assert client.post("/config", headers=headers, json={**body, "archive_after_days": 60,
                                                          "custom_criteria": "status = 'closed'"}).status_code == 200
    updated = only(app, "policy.update")
    assert updated.details["before"]["archive_after_days"] == 30 and updated.details["after"]["archive_after_days"] == 60
    assert updated.details["before"]["custom_criteria"] is None
    assert updated.details["after"]["custom_criteria"] == "status = 'closed'"
    assert client.delete("/config/orders", headers=headers).status_code == 204
    deleted = only(app, "policy.delete")
    assert deleted.details == {"before": updated.details["after"]}


def test_updated_by_is_shown_to_admins_only(app, client, admin, accounts, orders_source):
    _, headers = admin
    body = {"table_name": "orders", "archive_after_days": 30, "delete_after_days": 365}
    assert client.post("/config", headers=headers, json=body).status_code == 201
    assert client.get("/config/orders", headers=headers).get_json()["updated_by"] == "root"
    user = accounts.user("ann", tables=["orders"])
    seen = client.get("/config/orders", headers=user)
    assert seen.status_code == 200
    assert "updated_by" not in seen.get_json() and seen.get_json()["archive_after_days"] == 30


# --- reads of archived data -----------------------------------------------------------------------------

def test_every_read_of_archived_rows_is_recorded(app, client, accounts, archive_engine):
    ids = archive_synthetic(archive_engine, "orders", 5)
    uid = accounts.create("ann", tables=["orders"])
    headers = accounts.headers("ann")
    page = client.get("/archives/orders", headers=headers, query_string={"limit": 2, "row_date_from": "2020-01-01"},
                      environ_overrides={"REMOTE_ADDR": ADDRESS})
    assert page.status_code == 200
    listed = only(app, "archive.list")
    assert (listed.actor_id, listed.actor, listed.address, listed.target) == (uid, "ann", ADDRESS, "orders")
    assert listed.details == {"rows": 2, "order": "desc", "limit": 2,
                              "filters": {"row_date_from": "2020-01-01T00:00:00+00:00"}}
    nxt = client.get("/archives/orders", headers=headers,
                     query_string={"limit": 2, "row_date_from": "2020-01-01", "cursor": page.get_json()["next_cursor"]})
    assert nxt.status_code == 200
    assert events(app, "archive.list")[-1].details["after_id"] == page.get_json()["items"][-1]["id"]

    assert client.get(f"/archives/orders/{ids[0]}", headers=headers).status_code == 200
    read = only(app, "archive.read")
    assert read.details == {"row_id": ids[0], "rows": 1, "object_rows": 0} and read.actor_id == uid

    resp = client.get("/archives/orders/export", headers=headers, query_string={"format": "csv"})
    assert resp.status_code == 200
    resp.get_data()  # the whole stream
    resp.close()
    exported = only(app, "archive.export")
    assert exported.outcome == "success"
    assert exported.details == {"format": "csv", "order": "asc", "raw": False, "rows": 5, "complete": True}


def test_reads_that_return_nothing_record_nothing(app, client, accounts, archive_engine):
    archive_synthetic(archive_engine, "orders", 2)
    user = accounts.user("ann", tables=["invoices"])
    admin = accounts.admin("root")
    assert client.get("/archives/orders", headers=user).status_code == 403
    assert client.get("/archives/orders/999999", headers=admin).status_code == 404
    assert client.get("/archives/orders", headers=admin, query_string={"cursor": "forged"}).status_code == 400
    assert events(app, "archive.list") == [] and events(app, "archive.read") == []


def test_an_export_is_recorded_before_its_first_byte(app, client, accounts, archive_engine):
    archive_synthetic(archive_engine, "orders", 3)
    headers = accounts.admin("root")
    resp = client.get("/archives/orders/export", headers=headers, buffered=False)
    assert resp.status_code == 200
    started = only(app, "archive.export")
    assert started.details["rows"] is None and started.details["complete"] is False
    resp.close()  # the client goes away before reading anything
    ended = only(app, "archive.export")
    assert ended.details["complete"] is False and ended.outcome == "failure"


def test_restores_are_recorded_with_selection_and_result(app, client, accounts, archive_engine, source_engine):
    table = sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.Text), sa.Column("amount", sa.Text), sa.Column("ratio", sa.Float),
                     sa.Column("active", sa.Boolean), sa.Column("note", sa.Text), sa.Column("created_at", sa.Text))
    table.create(source_engine)
    ids = archive_synthetic(archive_engine, "orders", 3)
    admin_id = accounts.create("root", role="admin")
    headers = accounts.headers("root")
    resp = client.post("/archives/orders/restore", headers=headers, json={"ids": ids[:2]},
                       environ_overrides={"REMOTE_ADDR": ADDRESS})
    assert resp.status_code == 200, resp.get_json()
    restored = only(app, "archive.restore")
    assert (restored.actor_id, restored.address, restored.target, restored.outcome) == (admin_id, ADDRESS, "orders",
                                                                                       "success")
    assert restored.details["selection"] == {"ids": ids[:2], "id_count": 2}
    assert restored.details["restored"] == 2 and restored.details["run_id"] == resp.get_json()["run_id"]
    assert len(source_rows(source_engine, "orders")) == 2


def test_a_failed_restore_is_recorded_as_a_failure(app, client, accounts, archive_engine):
    archive_synthetic(archive_engine, "orders", 2)  # no source table: the restore cannot run
    headers = accounts.admin("root")
    resp = client.post("/archives/orders/restore", headers=headers, json={"all": True})
    assert resp.status_code >= 400
    failed = only(app, "archive.restore")
    assert failed.outcome == "failure" and failed.details["selection"] == {"all": True} and failed.details["error"]


# --- runs started and cancelled (POST /runs, POST /runs/{id}/cancel; the console does the same) ----------

def test_run_started_and_cancelled_are_recorded(app):
    actor = Actor(7, "root", ADDRESS)
    with app.app_context():
        audit.record_run_started(actor, 41, "archive", "orders", options={"dry_run": True})
        audit.record_run_cancelled(actor, 41, "archive", "orders")
    started, cancelled = only(app, "run.start"), only(app, "run.cancel")
    assert (started.actor_id, started.actor, started.address, started.target) == (7, "root", ADDRESS, "orders")
    assert started.details == {"run_id": 41, "kind": "archive", "options": {"dry_run": True}}
    assert cancelled.details == {"run_id": 41, "kind": "archive"}


def test_post_runs_and_cancel_are_recorded(app, client, accounts, source_engine):
    import time
    from tests.archive_helpers import add_policy
    with source_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, created_at TIMESTAMP NOT NULL)")
    add_policy(app, "orders")
    headers = accounts.admin("root")
    resp = client.post("/runs", json={"table_name": "orders", "kind": "archive", "dry_run": True}, headers=headers)
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["run_id"]
    started = only(app, "run.start")
    assert (started.actor, started.target) == ("root", "orders")
    assert started.details == {"run_id": run_id, "kind": "archive", "options": {"dry_run": True}}
    for _ in range(100):
        if client.get(f"/runs/{run_id}", headers=headers).get_json()["status"] != "running":
            break
        time.sleep(0.1)
    assert client.post(f"/runs/{run_id}/cancel", headers=headers).status_code == 409   # over: not recorded
    assert not events(app, "run.cancel")
    with app.app_context():  # a run still going (as a CLI run of another process would be)
        from archiver.services import runs
        running = runs.start_run("archive", "orders", "cli")
    resp = client.post(f"/runs/{running}/cancel", headers=headers)
    assert resp.status_code == 202 and resp.get_json()["cancel_requested_by"] == "root"
    cancelled = only(app, "run.cancel")
    assert (cancelled.actor, cancelled.target, cancelled.outcome) == ("root", "orders", "success")
    assert cancelled.details == {"run_id": running, "kind": "archive"}


# --- GET /audit ------------------------------------------------------------------------------------------

def test_only_admins_read_the_audit_trail(client, accounts):
    user = accounts.user("ann", tables=["orders"])
    assert_error(client.get("/audit", headers=user), 403, "forbidden")
    assert_error(client.get("/audit/export", headers=user), 403, "forbidden")
    assert_error(client.get("/audit"), 401, "token_missing")


def test_audit_listing_filters_and_pages(app, client, accounts):
    accounts.create("alice")
    for _ in range(3):
        post(client, "/auth/login", json={"username": "alice", "password": "wrong-password"})
    login(client, "alice")
    admin_id = accounts.create("root", role="admin")
    headers = accounts.headers("root")
    body = client.get("/audit", headers=headers, query_string={"action": "auth.login", "outcome": "failure"}).get_json()
    assert [e["details"]["username"] for e in body["items"]] == ["alice"] * 3
    assert body["next_before_id"] is None
    ids, before = [], None
    while True:
        query = {"limit": 2, **({"before_id": before} if before else {})}
        page = client.get("/audit", headers=headers, query_string=query).get_json()
        ids += [e["id"] for e in page["items"]]
        before = page["next_before_id"]
        if before is None:
            break
    assert ids == sorted(ids, reverse=True) and len(ids) == count(app)
    prefixed = client.get("/audit", headers=headers, query_string={"action": "auth."}).get_json()["items"]
    assert {e["action"] for e in prefixed} == {"auth.login"}
    by_actor = client.get("/audit", headers=headers, query_string={"actor": "alice"}).get_json()["items"]
    assert len(by_actor) == 1 and by_actor[0]["outcome"] == "success"
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert client.get("/audit", headers=headers, query_string={"at_from": future}).get_json()["items"] == []
    assert_error(client.get("/audit", headers=headers, query_string={"nope": "1"}), 400)
    assert_error(client.get("/audit", headers=headers, query_string={"outcome": "maybe"}), 400)
    assert admin_id


def test_audit_export_streams_everything_and_is_itself_audited(app, client, accounts):
    accounts.create("alice")
    post(client, "/auth/login", json={"username": "=cmd|' /C calc'!A0", "password": "wrong-password"})
    headers = accounts.admin("root")
    resp = client.get("/audit/export", headers=headers, query_string={"format": "csv"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Content-Type-Options"] == "nosniff"
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert rows[0] == ["id", "at", "action", "outcome", "actor_id", "actor", "address", "target", "details"]
    failed = [r for r in rows[1:] if r[2] == "auth.login"]
    assert len(failed) == 1 and json.loads(failed[0][8])["username"] == "=cmd|' /C calc'!A0"  # JSON cell: inert
    assert only(app, "audit.export").details == {"format": "csv", "filters": {}}
    lines = client.get("/audit/export", headers=headers, query_string={"action": "auth.login"}).get_data(as_text=True)
    assert [json.loads(line)["action"] for line in lines.splitlines()] == ["auth.login"]


def test_audit_csv_neutralises_formulas_in_cells(app, client, accounts):
    with app.app_context():
        audit.record_now("auth.login", Actor(None, "=HYPERLINK(\"http://x\")", "@evil"), outcome="failure")
    headers = accounts.admin("root")
    text = client.get("/audit/export", headers=headers, query_string={"format": "csv"}).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    row = next(r for r in rows[1:] if r[2] == "auth.login")
    assert row[5] == "'=HYPERLINK(\"http://x\")" and row[6] == "'@evil"


# --- retention -------------------------------------------------------------------------------------------------

def test_retention_deletes_only_events_older_than_the_setting(app, runner):
    with app.app_context():
        now = utcnow()
        for days in (400, 366, 364, 1):
            db.session.add(AuditEvent(at=now - timedelta(days=days), action="auth.login", outcome="success"))
        db.session.commit()
    result = runner.invoke(args=["prune-security"])
    assert result.exit_code == 0 and "Deleted 2 audit event(s) (older than 365 days)" in result.output
    assert len(events(app)) == 2
    app.config["AUDIT_RETENTION_DAYS"] = 0
    with app.app_context():
        assert audit.prune(now + timedelta(days=10_000)) == 0
    assert len(events(app)) == 2


def test_the_api_offers_no_way_to_change_the_trail(app, client, accounts):
    headers = accounts.admin("root")
    for method in ("post", "put", "patch", "delete"):
        for url in ("/audit", "/audit/", "/audit/1"):
            assert getattr(client, method)(url, headers=headers).status_code in (404, 405)
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/audit")]
    assert {m for r in rules for m in r.methods} - {"HEAD", "OPTIONS"} == {"GET"}


@pytest.mark.parametrize("databases", ["postgres"], indirect=True)  # synchronous_commit is PostgreSQL's
@pytest.mark.parametrize("sync_reads", [False, True])
def test_read_records_skip_the_wal_flush_on_postgresql_unless_told(app, client, accounts, archive_engine, databases,
                                                                   sync_reads):
    """The audit record of a read commits with synchronous_commit off (PostgreSQL) unless AUDIT_SYNC_READS;
    a change's record never does."""
    app.config["AUDIT_SYNC_READS"] = sync_reads
    archive_synthetic(archive_engine, "orders", 2)
    headers = accounts.admin("root")
    seen: list[str] = []

    def spy(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(archive_engine, "before_cursor_execute", spy)
    try:
        assert client.get("/archives/orders", headers=headers).status_code == 200
        relaxed = [s for s in seen if "synchronous_commit" in s]
        assert relaxed == ([] if sync_reads else ["SET LOCAL synchronous_commit TO OFF"])
        seen.clear()
        assert client.put("/users/1/permissions", headers=headers, json={"permissions": ["orders"]}).status_code == 200
        assert not [s for s in seen if "synchronous_commit" in s]
    finally:
        sa.event.remove(archive_engine, "before_cursor_execute", spy)
    assert len(events(app, "archive.list")) == 1
