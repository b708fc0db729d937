"""Relational archiving through the service: policies with children, preview, run records, browsing the
child tables with the usual grants, a row with the rows that moved with it, restore of an object, the CLI."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import ArchiveRun
from archiver.services import jobs
from tests.relational_support import fill_orders, insert, orders_schema

POLICY = {"table_name": "orders", "archive_after_days": 30, "delete_after_days": 365, "batch_size": 3}


def schema_with_invoices(source_engine) -> sa.MetaData:
    md, orders, items, notes = orders_schema()
    invoices = sa.Table("invoices", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id")))
    md.create_all(source_engine)
    today = datetime.now(timezone.utc).replace(tzinfo=None)  # the service runs at the real clock
    fill_orders(source_engine, orders, items, notes, old=today - timedelta(days=90), new=today + timedelta(days=1))
    insert(source_engine, invoices, [{"id": 1, "order_id": 2}])
    return md


def test_preview_then_run_then_browse_an_object(app, client, accounts, source_engine):
    schema_with_invoices(source_engine)
    admin = accounts.admin()
    assert client.post("/config", json=POLICY, headers=admin).status_code == 201

    preview = client.post("/config/orders/preview", headers=admin).get_json()
    assert preview["would_archive"] == 8
    assert [(m["table"], m["rows"]) for m in preview["moves_with"]] == [("order_items", 24), ("item_notes", 16)]
    assert preview["held_by"] == [{"reference": "invoices(order_id) → orders(id) ON DELETE NO ACTION",
                                   "rule": "NO ACTION", "rows": 1}]

    with app.app_context():
        report = jobs.run_archive("orders", trigger="test")
        (outcome,) = report.outcomes
        assert report.ok and outcome.rows == 7 and outcome.rows_skipped == 1
        run = db.session.get(ArchiveRun, outcome.run_id)
        assert (run.status, run.rows_deleted, run.rows_skipped) == ("succeeded", 7, 1)
        assert run.details["children"] == {"order_items": 21, "item_notes": 14}
        assert run.details["skipped"] == {"invoices(order_id) → orders(id) ON DELETE NO ACTION": 1}
        assert run.details["batch_sizes"]["mode"] == "adaptive" and run.details["batch_sizes"]["max"] == 3
    runs = client.get(f"/runs/{outcome.run_id}", headers=admin).get_json()
    assert runs["rows_skipped"] == 1 and runs["details"]["children"]["order_items"] == 21

    # A user granted orders only sees the order, and counts the child rows of tables it may not read.
    viewer = accounts.user("viewer", tables=["orders"])
    listed = client.get("/archives/order_items?limit=100", headers=viewer)
    assert listed.status_code == 403
    page = client.get("/archives/orders?limit=100", headers=viewer).get_json()["items"]
    one = next(r for r in page if r["source_pk"] == "1")
    detail = client.get(f"/archives/orders/{one['id']}", headers=viewer).get_json()
    assert detail["object"]["rows"] == [] and detail["object"]["hidden_rows"] == 5  # 3 items + 2 notes
    # An admin sees them, and a child row links back to its order.
    detail = client.get(f"/archives/orders/{one['id']}", headers=admin).get_json()
    assert [(r["table_name"], r["source_pk"], r["depth"]) for r in detail["object"]["rows"]] == [
        ("order_items", "10", 1), ("order_items", "11", 1), ("order_items", "12", 1),
        ("item_notes", "100", 2), ("item_notes", "102", 2)]
    item_id = detail["object"]["rows"][0]["id"]
    item = client.get(f"/archives/order_items/{item_id}", headers=admin).get_json()
    assert item["object"]["root_id"] == one["id"] and item["payload"] == {"id": 10, "order_id": 1, "sku": "sku-1-0"}
    assert client.get("/archives/order_items?limit=100", headers=accounts.user("items", tables=["order_items"])) \
        .status_code == 200

    # Restoring the order brings its items and notes back, parents first.
    restored = client.post("/archives/orders/restore", json={"ids": [one["id"]]}, headers=admin).get_json()
    assert restored["restored"] == 1 and restored["children"] == {"order_items": 3, "item_notes": 2}
    with source_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM order_items WHERE order_id = 1")).scalar() == 3


def test_a_policy_names_its_children_and_a_cycle_is_a_400(client, accounts, source_engine):
    md = sa.MetaData()
    sa.Table("invoice", md, sa.Column("invoice_id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("created_at", sa.DateTime), sa.Column("line_id", sa.Integer))
    sa.Table("invoice_line", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("invoice_id", sa.Integer))
    md.create_all(source_engine)
    admin = accounts.admin()
    child = {"table": "invoice_line", "columns": ["invoice_id"], "references": ["invoice_id"]}
    body = {**POLICY, "table_name": "invoice", "children": [child]}
    resp = client.post("/config", json=body, headers=admin)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["children"] == [{**child, "parent": None}]
    preview = client.post("/config/invoice/preview", headers=admin).get_json()
    assert preview["moves_with"][0]["via"] == ["invoice_line(invoice_id) → invoice(invoice_id) named by the policy"]

    cyclic = {**body, "children": [child, {"table": "invoice", "columns": ["line_id"], "references": ["id"],
                                           "parent": "invoice_line"}]}
    resp = client.post("/config", json=cyclic, headers=admin)
    assert resp.status_code == 400
    assert "cycle invoice → invoice_line → invoice" in resp.get_json()["error"]["details"]["children"][0]
    bad = client.post("/config", json={**body, "children": [{**child, "extra": 1}]}, headers=admin)
    assert bad.status_code == 400 and "children" in bad.get_json()["error"]["details"]
    assert client.get("/config/invoice", headers=admin).get_json()["children"] == [{**child, "parent": None}]


def test_cli_dry_run_shows_the_graph(app, runner, accounts, client, source_engine):
    schema_with_invoices(source_engine)
    assert client.post("/config", json=POLICY, headers=accounts.admin()).status_code == 201
    result = runner.invoke(args=["archive-now", "--table", "orders", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would archive 8 rows" in result.output
    assert "with 24 row(s) of order_items" in result.output and "with 16 row(s) of item_notes" in result.output
    assert "1 by invoices(order_id) → orders(id) ON DELETE NO ACTION" in result.output
    done = runner.invoke(args=["archive-now", "--table", "orders"])
    assert done.exit_code == 0 and "archived 7 rows" in done.output and "1 row(s) held back" in done.output


def test_a_hierarchy_moves_in_one_scheduled_run_and_the_run_says_how_many_passes(app, client, accounts, source_engine):
    """employees.manager_id → employees (NO ACTION), managers before their reports in key order: the
    run passes over the table again until its held managers are free; the record says so."""
    md = sa.MetaData()
    employees = sa.Table("employees", md, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                         sa.Column("manager_id", sa.Integer, sa.ForeignKey("employees.id")),
                         sa.Column("created_at", sa.DateTime))
    md.create_all(source_engine)
    old = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=90)
    for i in range(1, 9):  # a chain: each managed by the one before
        insert(source_engine, employees, [{"id": i, "manager_id": i - 1 if i > 1 else None, "created_at": old}])
    admin = accounts.admin()
    policy = {"table_name": "employees", "archive_after_days": 30, "delete_after_days": 365, "batch_size": 3}
    resp = client.post("/config", json=policy, headers=admin)
    assert resp.status_code == 201, resp.get_json()
    with app.app_context():
        report = jobs.run_archive("employees", trigger="scheduler")
    (outcome,) = report.outcomes
    run = client.get(f"/runs/{outcome.run_id}", headers=admin).get_json()
    assert (run["status"], run["rows_deleted"], run["rows_read"], run["rows_skipped"]) == ("succeeded", 8, 8, 0)
    assert run["details"]["passes"] >= 2 and "skipped" not in run["details"]
    with source_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(employees)).scalar() == 0
