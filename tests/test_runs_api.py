"""GET /runs and GET /runs/{id}: admin only, filters, newest first, keyset pages with a cap."""
from __future__ import annotations

from archiver.extensions import db
from archiver.models import ArchiveRun
from archiver.services import jobs as job_service
from tests.engine_support import NOW, add_policy, make_orders, old_dates


def _seed_runs(app) -> None:
    specs = [("orders", "archive", "succeeded"), ("orders", "purge", "succeeded"),
             ("customers", "archive", "failed"), ("orders", "archive", "skipped"),
             ("customers", "restore", "partial"), ("orders", "archive", "succeeded")]
    with app.app_context():
        for table, kind, status in specs:
            db.session.add(ArchiveRun(table_name=table, kind=kind, status=status, trigger="cli",
                                      error="locked by another runner" if status == "skipped" else None))
        db.session.commit()


def test_list_runs_newest_first_with_filters(app, client, accounts):
    _seed_runs(app)
    admin = accounts.admin()
    body = client.get("/runs", headers=admin).get_json()
    ids = [r["id"] for r in body["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 6
    assert body["next_before_id"] is None
    first = body["items"][0]
    assert set(first) >= {"id", "kind", "table_name", "trigger", "status", "dry_run", "started_at", "finished_at",
                          "duration_seconds", "rows_read", "rows_written", "rows_deleted", "batches", "error"}

    def fetch(query: str) -> list[tuple]:
        resp = client.get(f"/runs?{query}", headers=admin)
        assert resp.status_code == 200, resp.get_json()
        return [(r["table_name"], r["kind"], r["status"]) for r in resp.get_json()["items"]]

    assert fetch("table_name=customers") == [("customers", "restore", "partial"), ("customers", "archive", "failed")]
    assert fetch("kind=purge") == [("orders", "purge", "succeeded")]
    assert fetch("status=skipped") == [("orders", "archive", "skipped")]
    assert fetch("table_name=orders&kind=archive&status=succeeded") == [("orders", "archive", "succeeded")] * 2
    assert fetch("table_name=unknown") == []


def test_keyset_pagination(app, client, accounts):
    _seed_runs(app)
    admin = accounts.admin()
    seen, before = [], None
    while True:
        query = "limit=4" + (f"&before_id={before}" if before else "")
        body = client.get(f"/runs?{query}", headers=admin).get_json()
        seen += [r["id"] for r in body["items"]]
        before = body["next_before_id"]
        if before is None:
            break
    assert len(seen) == 6 == len(set(seen)) and seen == sorted(seen, reverse=True)


def test_bad_parameters_are_400(app, client, accounts):
    admin = accounts.admin()
    for query in ("limit=0", "limit=201", "kind=other", "status=done", "before_id=abc", "colour=red"):
        resp = client.get(f"/runs?{query}", headers=admin)
        assert resp.status_code == 400, query
        assert resp.get_json()["error"]["code"] == "validation_error"


def test_get_one_run_and_404(app, client, accounts, source_engine):
    make_orders(source_engine, old_dates(3))
    add_policy(app, "orders")
    with app.app_context():
        report = job_service.run_archive(trigger="api:admin", now=NOW)
    run_id = report.outcomes[0].run_id
    admin = accounts.admin()
    resp = client.get(f"/runs/{run_id}", headers=admin)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "succeeded" and body["rows_deleted"] == 3 and body["trigger"] == "api:admin"
    assert body["duration_seconds"] is not None and body["duration_seconds"] >= 0
    resp = client.get("/runs/999999", headers=admin)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


def test_runs_are_admin_only(app, client, accounts):
    _seed_runs(app)
    user = accounts.user("bob", tables=["orders"])
    assert client.get("/runs", headers=user).status_code == 403
    assert client.get("/runs/1", headers=user).status_code == 403
    assert client.get("/runs").status_code == 401
    assert client.get("/runs?limit=0").status_code == 401  # authentication before validation


def test_runs_are_documented_in_openapi(client):
    spec = client.get("/openapi.json").get_json()
    listing = spec["paths"]["/runs/"]["get"]
    assert {"200", "400", "401", "403"} <= set(listing["responses"])
    assert {p["name"] for p in listing["parameters"]} >= {"table_name", "kind", "status", "limit", "before_id"}
    assert {"200", "401", "403", "404"} <= set(spec["paths"]["/runs/{run_id}"]["get"]["responses"])
