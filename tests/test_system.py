"""/system/scheduler routes and the scheduler's start/stop rules."""
from __future__ import annotations

import time

import click
import pytest

from archiver.extensions import scheduler
from archiver.scheduler import init_scheduler, should_start, shutdown_scheduler
from tests.app_support import make_app


@pytest.fixture
def admin(accounts):
    return accounts.admin("admin")


@pytest.fixture
def running_scheduler(app):
    init_scheduler(app, start=True)
    assert scheduler.running
    yield scheduler
    shutdown_scheduler()
    assert not scheduler.running


def test_scheduler_is_off_in_tests_and_listed_as_stopped(client, admin):
    resp = client.get("/system/scheduler/jobs", headers=admin)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["running"] is False and body["state"] == "stopped"
    assert isinstance(body["jobs"], list) and isinstance(body["test_runs"], list)
    for job in body["jobs"]:
        assert set(job) >= {"id", "name", "trigger", "next_run_time"}


def test_test_job_needs_a_running_scheduler(client, admin):
    resp = client.post("/system/scheduler/test", json={"delay_seconds": 1}, headers=admin)
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "conflict"


def test_test_job_runs_once_and_is_recorded(client, admin, running_scheduler):
    resp = client.post("/system/scheduler/test", json={"delay_seconds": 1}, headers=admin)
    assert resp.status_code == 202, resp.get_json()
    job_id = resp.get_json()["job_id"]

    listing = client.get("/system/scheduler/jobs", headers=admin).get_json()
    assert listing["running"] is True and listing["state"] == "running"
    pending = [j for j in listing["jobs"] if j["id"] == job_id]
    if pending:  # it may already have run on a fast machine
        assert pending[0]["trigger"].startswith("date[")
        assert pending[0]["next_run_time"] is not None

    deadline = time.monotonic() + 60  # bounded wait, not a timing assertion
    runs: list = []
    while time.monotonic() < deadline:
        runs = [r for r in client.get("/system/scheduler/test", headers=admin).get_json()["runs"]
                if r["job_id"] == job_id]
        if runs:
            break
        time.sleep(0.2)
    assert len(runs) == 1, "the test job did not run within 60 s"
    assert runs[0]["archive_db"] == "ok"  # it ran inside an app context with database access

    listing = client.get("/system/scheduler/jobs", headers=admin).get_json()
    assert job_id not in {j["id"] for j in listing["jobs"]}  # one-off: gone after it ran
    assert job_id in {r["job_id"] for r in listing["test_runs"]}


def test_default_delay_and_empty_body(client, admin, running_scheduler):
    resp = client.post("/system/scheduler/test", headers=admin)
    assert resp.status_code == 202
    assert resp.get_json()["delay_seconds"] == 3
    job = scheduler.get_job(resp.get_json()["job_id"])
    assert job is not None and job.max_instances == 1 and job.coalesce is True


@pytest.mark.parametrize("body", [{"delay_seconds": 0}, {"delay_seconds": 61}, {"delay_seconds": "3"},
                                  {"delay_seconds": 1.5}, {"delay": 3}])
def test_bad_delay_is_400(client, admin, body):
    resp = client.post("/system/scheduler/test", json=body, headers=admin)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "validation_error"
    assert set(resp.get_json()["error"]["details"]) == set(body)


def test_scheduler_routes_are_admin_only(client, accounts):
    user = accounts.user("analyst", tables=["orders"])
    for method, url in (("get", "/system/scheduler/jobs"), ("post", "/system/scheduler/test"),
                        ("get", "/system/scheduler/test")):
        assert getattr(client, method)(url, headers=user).status_code == 403
        assert getattr(client, method)(url).status_code == 401


def test_rebinding_to_another_app_resets_the_scheduler(databases, app):
    init_scheduler(app, start=True)
    try:
        assert scheduler.running and scheduler.app is app
        other = make_app(databases)  # create_app re-binds the singleton: stops it, fresh state
        assert scheduler.app is other and not scheduler.running
        init_scheduler(other, start=True)
        assert scheduler.running
        scheduler.add_job(id="x", func=time.time, trigger="interval", seconds=3600)
        shutdown_scheduler()
        init_scheduler(other, start=True)  # restart after shutdown works (fresh thread pool)
        assert scheduler.running and scheduler.get_job("x") is None
    finally:
        shutdown_scheduler()


def test_started_only_in_serving_processes(app, monkeypatch):
    app.config["SCHEDULER_ENABLED"] = True
    assert should_start(app)  # no click context: a WSGI server
    with click.Context(click.Command("init-db"), info_name="init-db"):
        assert not should_start(app)
    run = click.Command("run", params=[click.Option(["--reload/--no-reload"], default=None)])
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    with click.Context(run, info_name="run") as ctx:
        ctx.params["reload"] = True
        assert not should_start(app)  # the reloader's parent
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
        assert should_start(app)  # the reloader's child serves
        ctx.params["reload"] = False
        monkeypatch.delenv("WERKZEUG_RUN_MAIN")
        assert should_start(app)
    app.config["SCHEDULER_ENABLED"] = False
    assert not should_start(app)
