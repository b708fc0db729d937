"""Run control with real processes: a killed run frees its table at once and is recorded ``abandoned``;
two runs of one table never overlap (the loser exits 3 / answers 409 naming the holder); counters
are live while a run is in flight; a run is cancelled between batches; SIGTERM stops the service
gracefully. SQLite, PostgreSQL (TEST_POSTGRES_URL) and MariaDB (when the local server answers)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests

from archiver.engine.lease import TableLock
from archiver.extensions import db
from archiver.models import ArchiveRun
from archiver.services import jobs as job_service
from archiver.services import runs as runs_service

from tests.app_support import Accounts
from tests.engine_support import NOW, add_policy, all_runs, archived, assert_no_loss, make_orders, source_rows
from tests.run_support import ROOT, archive_now, child_env, wait_for_line

pytestmark = pytest.mark.slow


def _setup(app, source_engine, n_old: int, batch_size: int) -> tuple[dict, set[str]]:
    make_orders(source_engine, [NOW - timedelta(days=90, minutes=i) for i in range(n_old)]
                + [NOW + timedelta(days=3650)] * 3)
    add_policy(app, "orders", batch_size=batch_size)
    return source_rows(source_engine, "orders"), {str(i + 1) for i in range(n_old)}


def _finished(source_engine, archive_engine, original, qualifying) -> None:
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert set(arc) == qualifying and set(src) == set(original) - qualifying
    assert_no_loss(original, src, arc)


def _run(app, run_id: int) -> ArchiveRun:
    with app.app_context():
        run = db.session.get(ArchiveRun, run_id)
        db.session.expunge_all()
        return run


# --- 1. SIGKILL mid-run: the next run starts at once, finishes, and records the dead one ------

def test_killed_run_frees_the_table_at_once_and_is_recorded_abandoned(rc):
    app, dbs, source_engine, archive_engine = rc
    original, qualifying = _setup(app, source_engine, n_old=40, batch_size=5)
    # Killed when batch 4 is selected: batches 1-3 are committed and their counters written.
    killed = archive_now(dbs, ARCHIVER_FAULT_POINT="after_select:4")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert_no_loss(original, source_rows(source_engine, "orders"), archived(archive_engine, "orders"))
    (dead,) = all_runs(app)
    assert dead.status == "running" and dead.pid == killed.pid

    started = time.monotonic()
    rerun = archive_now(dbs)  # no lease expiry fast-forwarded: the lock died with its holder
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out + err
    assert time.monotonic() - started < 60
    _finished(source_engine, archive_engine, original, qualifying)

    dead_run, done = all_runs(app)
    assert dead_run.status == "abandoned" and dead_run.finished_at is not None
    assert f"pid {killed.pid}" in dead_run.error and f"by run {done.id}" in dead_run.error
    moved_by_dead = 40 - done.rows_deleted
    if dbs.backend == "sqlite":  # one batch after another: exactly batches 1-3
        assert dead_run.rows_deleted == moved_by_dead == 15 and dead_run.batches == 3
    else:  # overlapped batches: the counters cover every batch committed up to the last report
        # (batch 4 is read ahead while batch 3 commits: at least batches 1-2 reported)
        assert 10 <= dead_run.rows_deleted <= moved_by_dead and dead_run.rows_deleted % 5 == 0
    assert dead_run.rows_total == 40
    assert done.status == "succeeded"
    assert TableLock(archive_engine, "orders").current_holder() is None


# --- 2. two processes at once: one works, the other exits 3 naming the holder; API 409 --------

def test_two_processes_at_once_one_works_the_other_exits_3_naming_the_holder(rc):
    app, dbs, source_engine, archive_engine = rc
    # ~6 s of work each: long enough to overlap even when one process starts seconds after the other.
    original, qualifying = _setup(app, source_engine, n_old=300, batch_size=5)
    slow = {"ARCHIVER_FAULT_POINT": "after_batch:1:sleep=0.1"}
    procs = [archive_now(dbs, **slow) for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in procs]
    codes = sorted(r[3] for r in results)
    assert codes == [0, 3], results
    (winner,) = [r for r in results if r[3] == 0]
    (loser,) = [r for r in results if r[3] == 3]
    assert "error: orders: held by archive run " in loser[2]
    assert f"pid {winner[0]}, since " in loser[2]
    assert "orders: skipped" in loser[1]
    _finished(source_engine, archive_engine, original, qualifying)
    statuses = sorted((r.status, r.pid) for r in all_runs(app))
    assert statuses == sorted([("succeeded", winner[0]), ("skipped", loser[0])])


def test_api_answers_409_naming_the_process_that_holds_the_table(rc):
    app, dbs, source_engine, archive_engine = rc
    original, qualifying = _setup(app, source_engine, n_old=600, batch_size=5)
    # Slow enough to still hold the table on a loaded machine; cancelled at the end.
    cli = archive_now(dbs, "--progress", ARCHIVER_FAULT_POINT="after_batch:1:sleep=0.25")
    try:
        wait_for_line(cli, ": batch 1:")
        admin = Accounts(app).admin()
        resp = app.test_client().post("/runs", json={"table_name": "orders"}, headers=admin)
        assert resp.status_code == 409, resp.get_json()
        error = resp.get_json()["error"]
        assert error["code"] == "table_held"
        holder = error["details"]["holder"]
        assert holder["pid"] == cli.pid and holder["kind"] == "archive" and holder["run_id"] is not None
        assert f"pid {cli.pid}" in error["message"]
        # Purge of the same table is refused the same way (one lock per table).
        resp = app.test_client().post("/runs", json={"table_name": "orders", "kind": "purge"}, headers=admin)
        assert resp.status_code == 409
        assert app.test_client().post(f"/runs/{holder['run_id']}/cancel", headers=admin).status_code == 202
    finally:
        out, err = cli.communicate(timeout=300)
    assert cli.returncode == 130, out + err
    assert_no_loss(original, source_rows(source_engine, "orders"), archived(archive_engine, "orders"))


# --- 3. live progress and cancel ---------------------------------------------------------------

def _poll(fn, timeout: float = 60, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_progress_is_visible_while_a_run_is_in_flight_and_cancel_stops_it_between_batches(rc, monkeypatch):
    app, dbs, source_engine, archive_engine = rc
    original, _ = _setup(app, source_engine, n_old=200, batch_size=5)
    monkeypatch.setenv("ARCHIVER_ENV", "testing")
    monkeypatch.setenv("ARCHIVER_FAULT_POINT", "after_batch:1:sleep=0.1")  # a slow source
    client, admin = app.test_client(), Accounts(app).admin()
    resp = client.post("/runs", json={"table_name": "orders", "kind": "archive"}, headers=admin)
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    run_id = body["run_id"]
    assert body["url"] == f"/runs/{run_id}" and body["status"] == "running"

    def in_flight():
        run = client.get(f"/runs/{run_id}", headers=admin).get_json()
        return run if run["batches"] >= 3 else None

    run = _poll(in_flight)
    assert run["status"] == "running" and run["rows_total"] == 200
    assert run["rows_deleted"] == run["rows_read"] == run["rows_written"] == 5 * run["batches"]
    assert run["rate"] > 0 and run["eta_seconds"] > 0 and 0 < run["percent"] < 100
    assert run["progress_at"] is not None and run["host"] and run["pid"] == os.getpid()

    resp = client.post(f"/runs/{run_id}/cancel", headers=admin)
    assert resp.status_code == 202 and resp.get_json()["cancel_requested_at"]
    run = _poll(lambda: (r := client.get(f"/runs/{run_id}", headers=admin).get_json())["status"] != "running" and r,
                timeout=30)
    assert run["status"] == "cancelled" and run["finished_at"] and "cancelled" in run["error"]
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert_no_loss(original, src, arc)
    assert not set(src) & set(arc)  # stopped between batches: nothing half-done
    assert 0 < len(arc) < 200 and run["rows_deleted"] == len(arc)
    assert TableLock(archive_engine, "orders").current_holder() is None  # the lock is free
    # Cancelling a run that is over is a conflict; an unknown run a 404.
    assert client.post(f"/runs/{run_id}/cancel", headers=admin).status_code == 409
    assert client.post("/runs/999999/cancel", headers=admin).status_code == 404
    # The next run finishes the table.
    monkeypatch.delenv("ARCHIVER_FAULT_POINT")
    resp = client.post("/runs", json={"table_name": "orders"}, headers=admin)
    assert resp.status_code == 202
    done = _poll(lambda: (r := client.get(resp.get_json()["url"], headers=admin).get_json())["status"] != "running"
                 and r)
    assert done["status"] == "succeeded" and done["rows_deleted"] == 200 - len(arc)


def test_cancel_through_the_api_stops_a_cli_run_in_another_process(rc):
    app, dbs, source_engine, archive_engine = rc
    original, _ = _setup(app, source_engine, n_old=200, batch_size=5)
    cli = archive_now(dbs, "--progress", ARCHIVER_FAULT_POINT="after_batch:1:sleep=0.1")
    wait_for_line(cli, ": batch 2:")
    (run,) = all_runs(app)
    admin = Accounts(app).admin()
    assert app.test_client().post(f"/runs/{run.id}/cancel", headers=admin).status_code == 202
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, out + err
    assert "orders: cancelled" in out
    (run,) = all_runs(app)
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert run.status == "cancelled" and run.rows_deleted == len(arc) < 200
    assert_no_loss(original, src, arc)


def test_dry_run_and_purge_over_the_api(rc):
    app, dbs, source_engine, archive_engine = rc
    _setup(app, source_engine, n_old=7, batch_size=5)
    client, admin = app.test_client(), Accounts(app).admin()
    for body, expect in (({"table_name": "orders", "dry_run": True}, {"dry_run": True, "rows_read": 7}),
                         ({"table_name": "orders", "kind": "purge"}, {"kind": "purge", "rows_deleted": 0})):
        resp = client.post("/runs", json=body, headers=admin)
        assert resp.status_code == 202, resp.get_json()
        run = _poll(lambda: (r := client.get(resp.get_json()["url"], headers=admin).get_json())["status"]
                    != "running" and r)
        assert run["status"] == "succeeded" and {k: run[k] for k in expect} == expect
    assert len(source_rows(source_engine, "orders")) == 10
    assert client.post("/runs", json={"table_name": "nope"}, headers=admin).status_code == 404
    assert client.post("/runs", json={"table_name": "orders", "kind": "restore"}, headers=admin).status_code == 400
    assert client.post("/runs", json={"table_name": "orders"}).status_code == 401


def test_shutdown_returns_only_once_the_interrupted_runs_end_is_recorded(rc, monkeypatch):
    """What SIGTERM waits for: a run counted out of the process's runs before its record said
    ``interrupted`` let the process exit with the run left ``running`` (CI met it, once)."""
    app, dbs, source_engine, archive_engine = rc
    _setup(app, source_engine, n_old=200, batch_size=5)
    monkeypatch.setenv("ARCHIVER_ENV", "testing")
    monkeypatch.setenv("ARCHIVER_FAULT_POINT", "after_batch:1:sleep=0.1")
    record_end = runs_service.finish_run

    def slow_to_record(*args, **kwargs):  # a loaded archive database: the record takes a while
        time.sleep(1.0)
        return record_end(*args, **kwargs)

    monkeypatch.setattr(runs_service, "finish_run", slow_to_record)
    with app.app_context():
        run_id = job_service.start_background("archive", "orders", dry_run=False, trigger="test")
    _poll(lambda: _run(app, run_id).batches >= 2)
    try:
        with app.app_context():
            left = job_service.shutdown(timeout=20)
    finally:
        job_service.SHUTDOWN.clear()
    run = _run(app, run_id)
    assert left == [] and run.status == "interrupted" and run.finished_at is not None
    assert 0 < run.rows_deleted < 200


# --- 4. SIGTERM to the service -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_to_waitress_interrupts_the_running_job_after_its_batch_and_exits_in_time(rc):
    app, dbs, source_engine, archive_engine = rc
    original, _ = _setup(app, source_engine, n_old=400, batch_size=5)
    admin = Accounts(app).admin()
    port = _free_port()
    env = child_env(dbs, ARCHIVER_FAULT_POINT="after_batch:1:sleep=0.1", SHUTDOWN_TIMEOUT_SECONDS="10",
               SCHEDULER_ENABLED="false")
    # How scripts/run.sh and the container serve it (waitress inside archiver/serve.py).
    server = subprocess.Popen([sys.executable, "-m", "archiver.serve", "--host", "127.0.0.1",
                               "--port", str(port), "--threads", "4"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _poll(lambda: _get(base + "/health"), timeout=60, every=0.2)
        resp = requests.post(base + "/runs", json={"table_name": "orders"}, headers=admin, timeout=10)
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["run_id"]
        _poll(lambda: requests.get(f"{base}/runs/{run_id}", headers=admin, timeout=10).json()["batches"] >= 2)
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, out[-3000:]
    assert took < 10 + 5, took  # SHUTDOWN_TIMEOUT_SECONDS plus waitress' own close
    assert "received SIGTERM" in out
    run = _run(app, run_id)
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert run.status == "interrupted" and run.finished_at is not None
    assert run.rows_deleted == len(arc) and 0 < len(arc) < 400 and run.batches == len(arc) // 5
    assert not set(src) & set(arc)
    assert_no_loss(original, src, arc)
    assert TableLock(archive_engine, "orders").current_holder() is None  # the lock is free


def _get(url: str):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
