"""The API the console needs (issue 17, point 4): PATCH /config/{table}, preview with sample rows and
unsaved fields, GET /source/tables, `/config` as `{"items": [...]}`, one timestamp format everywhere."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import ArchivePolicy, AuditEvent
from tests.archive_helpers import archive_synthetic, known_tables

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00$")


@pytest.fixture
def orders(source_engine):
    md = sa.MetaData()
    table = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("status", sa.String(20)), sa.Column("amount", sa.Numeric(10, 2)),
                     sa.Column("created_at", sa.DateTime), sa.Column("placed_on", sa.Date))
    sa.Table("notes", md, sa.Column("code", sa.String(10), primary_key=True), sa.Column("body", sa.Text))
    md.create_all(source_engine)
    now = datetime.utcnow().replace(microsecond=0)
    with source_engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "status": "closed" if i % 2 else "open", "amount": f"{i}.25",
                                       "created_at": now - timedelta(days=10 * i - 5), "placed_on": None}
                                      for i in range(1, 11)])
    return table


@pytest.fixture
def admin(accounts):
    return accounts.admin("admin")


def create(client, admin, **fields):
    body = {"table_name": "orders", "archive_after_days": 30, "delete_after_days": 365, **fields}
    resp = client.post("/config", json=body, headers=admin)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


# --- PATCH /config/{table} ---------------------------------------------------------------------

def test_patch_changes_only_the_fields_sent(app, client, admin, orders):
    create(client, admin, custom_criteria="status = 'closed'", batch_size=500, enabled=True)
    resp = client.patch("/config/orders", json={"enabled": False}, headers=admin)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["enabled"], body["custom_criteria"], body["batch_size"], body["archive_after_days"]) == \
        (False, "status = 'closed'", 500, 30)
    resp = client.patch("/config/orders", json={"archive_after_days": 45, "custom_criteria": None}, headers=admin)
    assert resp.status_code == 200
    assert (resp.get_json()["archive_after_days"], resp.get_json()["custom_criteria"],
            resp.get_json()["enabled"]) == (45, None, False)
    with app.app_context():
        events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "policy.update")
                                    .order_by(AuditEvent.id)).scalars().all()
        assert events[-1].details["before"]["archive_after_days"] == 30
        assert events[-1].details["after"]["archive_after_days"] == 45


def test_patch_is_validated_and_refused_changes_keep_the_policy(client, admin, orders):
    create(client, admin)
    for body, field in (({"date_column": "status"}, "date_column"), ({"custom_criteria": "nope = 1"}, None),
                        ({"table_name": "other"}, "table_name"), ({"archive_after_days": -1}, "archive_after_days"),
                        ({}, "_schema"), ({"bogus": 1}, "bogus")):
        resp = client.patch("/config/orders", json=body, headers=admin)
        assert resp.status_code == 400, (body, resp.get_json())
        if field:
            assert field in (resp.get_json()["error"]["details"] or {}), (body, resp.get_json())
    assert client.get("/config/orders", headers=admin).get_json()["date_column"] == "created_at"
    assert client.patch("/config/missing", json={"enabled": False}, headers=admin).status_code == 404


def test_patch_is_admin_only(client, accounts, admin, orders):
    create(client, admin)
    user = accounts.user("ann", tables=["orders"])
    assert client.patch("/config/orders", json={"enabled": False}, headers=user).status_code == 403
    assert client.patch("/config/orders", json={"enabled": False}).status_code == 401


# --- preview -------------------------------------------------------------------------------------

def test_preview_returns_samples_of_the_stored_policy(client, admin, orders):
    create(client, admin, custom_criteria="status = 'closed'")
    resp = client.post("/config/orders/preview", headers=admin)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    # ids 5, 7, 9 are closed and older than 30 days (row i is 10 * i - 5 days old)
    assert body["would_archive"] == 3 and body["saved"] is True
    assert [s["id"] for s in body["samples"]] == [5, 7, 9]
    assert body["samples"][0]["amount"] == "5.25" and body["samples"][0]["status"] == "closed"
    assert ISO_UTC.match(body["cutoff"])
    few = client.post("/config/orders/preview", json={"sample_rows": 2}, headers=admin).get_json()
    assert [s["id"] for s in few["samples"]] == [5, 7] and few["would_archive"] == 3


def test_preview_of_unsaved_fields_saves_nothing(app, client, admin, orders):
    body = client.post("/config/orders/preview", json={"archive_after_days": 55}, headers=admin).get_json()
    assert body["would_archive"] == 4 and body["saved"] is False   # ids 7..10
    assert [s["id"] for s in body["samples"]] == [7, 8, 9, 10]
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(ArchivePolicy.id))).scalar() == 0
    create(client, admin)
    body = client.post("/config/orders/preview", json={"custom_criteria": "amount > 8"}, headers=admin).get_json()
    assert body["would_archive"] == 3 and body["archive_after_days"] == 30   # 8.25, 9.25, 10.25
    bad = client.post("/config/orders/preview", json={"date_column": "status"}, headers=admin)
    assert bad.status_code == 400 and "date_column" in bad.get_json()["error"]["details"]
    bad = client.post("/config/orders/preview", json={"custom_criteria": "amount > 'x'"}, headers=admin)
    assert bad.status_code == 400 and "custom_criteria" in bad.get_json()["error"]["details"]
    assert client.post("/config/orders/preview", json={"sample_rows": 51}, headers=admin).status_code == 400
    assert client.post("/config/nothing/preview", headers=admin).status_code == 404


# --- GET /source/tables --------------------------------------------------------------------------

def test_source_tables_lists_columns_keys_and_a_suggested_date_column(client, admin, orders, archive_engine):
    create(client, admin)
    archive_synthetic(archive_engine, "orders", 3)
    resp = client.get("/source/tables", headers=admin)
    assert resp.status_code == 200, resp.get_json()
    items = {t["name"]: t for t in resp.get_json()["items"]}
    assert set(items) == {"orders", "notes"}
    o = items["orders"]
    assert o["primary_key"] == ["id"] and o["suggested_date_column"] == "created_at"
    assert o["has_policy"] is True and o["archived_rows"] == 3
    cols = {c["name"]: c for c in o["columns"]}
    assert list(cols) == ["id", "status", "amount", "created_at", "placed_on"]
    assert cols["id"]["primary_key"] is True and cols["status"]["primary_key"] is False
    assert "CHAR" in cols["status"]["type"].upper() and cols["amount"]["type"].upper().startswith(("NUMERIC", "DECIMAL"))
    n = items["notes"]
    assert n["suggested_date_column"] is None and n["has_policy"] is False and n["archived_rows"] == 0


def test_source_tables_is_admin_only(client, accounts, orders):
    user = accounts.user("ann", tables=["orders"])
    assert client.get("/source/tables", headers=user).status_code == 403
    assert client.get("/source/tables").status_code == 401
    admin = accounts.admin()
    assert client.get("/source/tables?x=1", headers=admin).status_code == 400


# --- listings and timestamps ------------------------------------------------------------------------

def test_config_list_is_an_items_object(client, admin, orders):
    create(client, admin)
    body = client.get("/config/", headers=admin).get_json()
    assert list(body) == ["items"] and [p["table_name"] for p in body["items"]] == ["orders"]


def test_every_timestamp_has_the_utc_offset(app, client, accounts, admin, orders, archive_engine):
    create(client, admin)
    known_tables(app, "events")
    archive_synthetic(archive_engine, "orders", 2)
    uid = accounts.create("bob")
    found: list[str] = []

    def collect(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k in ("samples", "payload"):   # archived values, as stored
                    continue
                if isinstance(v, str) and (k.endswith("_at") or k in ("at", "cutoff", "row_date")):
                    found.append(v)
                else:
                    collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    client.post("/archives/orders/restore", json={"ids": [1]}, headers=admin)  # makes a run
    for url in (f"/users/{uid}", "/users/", "/config/", "/config/orders", "/runs/", "/archives/", "/archives/orders",
                "/audit/", "/auth/me"):
        resp = client.get(url, headers=admin)
        assert resp.status_code == 200, url
        collect(resp.get_json())
    collect(client.post("/config/orders/preview", headers=admin).get_json())
    assert len(found) > 10
    assert all(ISO_UTC.match(v) for v in found), [v for v in found if not ISO_UTC.match(v)]
