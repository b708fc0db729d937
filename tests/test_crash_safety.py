"""Crash safety: `flask archive-now` is SIGKILLed at chosen points (and at a random moment) in a
separate process; no row is ever lost, the next run reconciles, a further run moves nothing.

On PostgreSQL (the ``databases`` fixture) the generic protocol runs, pipelined: archive commit,
then source delete. On SQLite two files move inside SQLite (the archive connection copies, then the
source deletes, under the source's write lock), and with IN_SERVER_MOVES=false by the generic
protocol. On MariaDB with both databases on one server the in-server move runs: one transaction
per batch, so a kill leaves no row in both places at all.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.extensions import db
from archiver.services import database
from tests.app_support import JWT_SECRET, Databases, make_app
from tests.engine_support import NOW, add_policy, all_runs, archived, assert_no_loss, make_orders, source_rows
from tests.mariadb_support import pad_table

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _env(databases, fault: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "FLASK_", "IN_SERVER_"))}
    env.update({"ARCHIVER_ENV": "testing", "SOURCE_DATABASE_URL": databases.source_url,
                "ARCHIVE_DATABASE_URL": databases.archive_url, "JWT_SECRET_KEY": JWT_SECRET,
                "PYTHONPATH": str(ROOT), **getattr(databases, "env", {})})
    if fault:
        env["ARCHIVER_FAULT_POINT"] = fault
    env.update(extra)
    return env


def _cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "archiver", "archive-now", *extra]


def _archive_now(databases, fault: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(), cwd=ROOT, env=_env(databases, fault, **env), capture_output=True, text=True,
                          timeout=300)


def _setup(app, source_engine, n_old: int, batch_size: int) -> tuple[dict, set[str]]:
    dates = [NOW - timedelta(days=90, minutes=i) for i in range(n_old)]
    recent = [NOW + timedelta(days=3650)] * 3  # never qualifies, whatever today's date is
    make_orders(source_engine, dates + recent)
    add_policy(app, "orders", batch_size=batch_size)
    original = source_rows(source_engine, "orders")
    qualifying = {str(i + 1) for i in range(n_old)}
    return original, qualifying


def _expire_leases(archive_engine) -> None:
    """Nothing to do: the killed runner's lock died with it (its pid is gone; advisory locks with the session)."""


def _assert_finished(source_engine, archive_engine, original, qualifying) -> None:
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert set(arc) == qualifying
    assert set(src) == set(original) - qualifying
    assert_no_loss(original, src, arc)


CHECKPOINT_FAULTS = pytest.mark.parametrize("fault, in_both", [
    ("after_select:2", 0),             # batch 2 selected and locked, archive not committed
    ("after_archive_commit:2", 7),     # batch 2 archived and committed, source delete not done
    ("after_source_delete:2", 7),      # batch 2 deleted but that source transaction not committed
])


@CHECKPOINT_FAULTS
def test_killed_at_a_checkpoint_loses_nothing_and_the_rerun_reconciles(app, databases, source_engine,
                                                                      archive_engine, fault, in_both):
    """Two SQLite files move inside SQLite (in-server moves); PostgreSQL pipelines by the protocol."""
    _killed_at_a_checkpoint(app, databases, source_engine, archive_engine, fault, in_both)


@pytest.mark.app_config(IN_SERVER_MOVES=False)
@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
@CHECKPOINT_FAULTS
def test_sqlite_generic_protocol_killed_at_a_checkpoint(app, databases, source_engine, archive_engine, fault,
                                                         in_both):
    """The same on SQLite with in-server moves off: the portable protocol, one batch after another."""
    _killed_at_a_checkpoint(app, databases, source_engine, archive_engine, fault, in_both, IN_SERVER_MOVES="false")


def _killed_at_a_checkpoint(app, databases, source_engine, archive_engine, fault: str, in_both: int,
                            **env: str) -> None:
    original, qualifying = _setup(app, source_engine, n_old=30, batch_size=7)

    killed = _archive_now(databases, fault, **env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert_no_loss(original, src, arc)
    assert len(arc) == 7 + in_both  # batch 1 archived, batch 2 too when its archive commit was reached
    if databases.backend == "sqlite":  # one batch after another: batch 1 fully moved
        assert len(set(src) & set(arc)) == in_both
    else:  # PostgreSQL pipelines: batch 1's DELETE may not have committed yet either
        assert len(set(src) & set(arc)) in (in_both, in_both + 7)
    with archive_engine.connect() as conn:
        assert conn.execute(sa.select(schema.table_locks.c.holder)).scalar_one()  # left behind by the dead runner

    _expire_leases(archive_engine)
    done = _archive_now(databases, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("moved inside the database" in done.stdout) is (databases.backend == "sqlite" and not env)
    _assert_finished(source_engine, archive_engine, original, qualifying)

    again = app.test_cli_runner().invoke(args=["archive-now"])
    assert again.exit_code == 0 and "archived 0 rows" in again.output
    _assert_finished(source_engine, archive_engine, original, qualifying)
    statuses = [(r.status, r.error) for r in all_runs(app)]
    # The killed run is closed as abandoned by the next run that took the table's lock.
    assert statuses[0][0] == "abandoned" and statuses[0][1].startswith("abandoned")
    assert [s for s, _ in statuses[1:]] == ["succeeded", "succeeded"]


def _signal_at_first_batch(databases, sig: int) -> tuple[int, str, str]:
    """Run archive-now with --progress and send ``sig`` when it reports its first batch."""
    proc = subprocess.Popen(_cmd("--progress"), cwd=ROOT, env=_env(databases), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if ": batch " in line:
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_killed_from_outside_at_a_random_moment(app, databases, source_engine, archive_engine):
    original, qualifying = _setup(app, source_engine, n_old=1500, batch_size=5)
    _signal_at_first_batch(databases, signal.SIGKILL)
    assert_no_loss(original, source_rows(source_engine, "orders"), archived(archive_engine, "orders"))
    _expire_leases(archive_engine)
    done = _archive_now(databases)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_finished(source_engine, archive_engine, original, qualifying)


def test_sigterm_stops_cleanly_between_batches(app, databases, source_engine, archive_engine):
    original, qualifying = _setup(app, source_engine, n_old=1500, batch_size=5)
    returncode, out, err = _signal_at_first_batch(databases, signal.SIGTERM)
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert_no_loss(original, src, arc)
    print("archive-now exit status after SIGTERM:", returncode)
    if returncode == 130:  # stopped before the end (the usual case)
        assert "stopping after the current batch" in err
        assert not set(src) & set(arc)  # stopped between batches: nothing half-done
        (run,) = all_runs(app)
        assert run.status == "interrupted" and run.rows_deleted == len(arc)
    else:  # it finished before the signal arrived
        assert returncode == 0, out + err
    done = _archive_now(databases)  # the lease was released on the clean stop: no expiry needed
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_finished(source_engine, archive_engine, original, qualifying)


# --- MariaDB, source and archive on one server: in-server moves, or pipelined batches ---------

@dataclass(frozen=True)
class MariaDatabases(Databases):
    env: dict = field(default_factory=dict)


@pytest.fixture(params=["in_server", "pipelined"])
def maria(request, server):
    """An app whose source and archive are two databases of the local MariaDB server; with
    in-server moves, or with them off (IN_SERVER_MOVES=false: pipelined generic batches)."""
    src, arc = server.database()[0], server.database()[0]
    in_server = request.param == "in_server"
    databases = MariaDatabases("mariadb", server.url(src), server.url(arc),
                               env={"IN_SERVER_MOVES": "true" if in_server else "false"})
    app = make_app(databases, IN_SERVER_MOVES=in_server)
    with app.app_context():
        database.init_db()
        engines = db.engines["source"], db.engines[None]
    try:
        yield app, databases, *engines
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def _maria_setup(app, source_engine, n_old: int, batch_size: int) -> tuple[dict, set[str]]:
    """``_setup`` plus 10,000 rows that never qualify: batches overlap only on tables that size."""
    make_orders(source_engine, [NOW - timedelta(days=90, minutes=i) for i in range(n_old)])
    pad_table(source_engine, "orders", n_old + 1, 10_000, f"'{(NOW + timedelta(days=3650)):%Y-%m-%d}', 'open', NULL, NULL")
    add_policy(app, "orders", batch_size=batch_size)
    return source_rows(source_engine, "orders"), {str(i + 1) for i in range(n_old)}


def _assert_whole_batches(source_engine, archive_engine, original, batch_size: int, in_server: bool) -> None:
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert_no_loss(original, src, arc)
    if in_server:
        assert not set(src) & set(arc)  # one transaction per batch: never in both places
        assert len(arc) % batch_size == 0
    else:  # up to two batches in flight: archived (committed), their DELETEs not committed
        assert len(set(src) & set(arc)) <= 2 * batch_size


def _rerun_finishes(app, databases, source_engine, archive_engine, original, qualifying) -> None:
    _expire_leases(archive_engine)
    done = _archive_now(databases)
    assert done.returncode == 0, done.stdout + done.stderr
    in_server = databases.env["IN_SERVER_MOVES"] == "true"
    assert ("moved inside the database" in done.stdout) is in_server
    assert ("batches pipelined" in done.stdout) is not in_server
    _assert_finished(source_engine, archive_engine, original, qualifying)
    again = app.test_cli_runner().invoke(args=["archive-now"])
    assert again.exit_code == 0 and "archived 0 rows" in again.output
    _assert_finished(source_engine, archive_engine, original, qualifying)


@pytest.mark.parametrize("maria, fault", [
    *[("in_server", f) for f in ("after_select:2", "after_archive_insert:2", "after_source_delete:2",
                                 "after_source_delete:4")],
    *[("pipelined", f) for f in ("after_select:2", "after_archive_commit:2", "after_source_delete:2",
                                 "after_source_delete:4")],
], indirect=["maria"])
def test_mariadb_killed_at_a_checkpoint(maria, fault):
    app, databases, source_engine, archive_engine = maria
    in_server = databases.env["IN_SERVER_MOVES"] == "true"
    original, qualifying = _maria_setup(app, source_engine, n_old=40, batch_size=7)
    killed = _archive_now(databases, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _assert_whole_batches(source_engine, archive_engine, original, 7, in_server)
    _rerun_finishes(app, databases, source_engine, archive_engine, original, qualifying)
    statuses = [r.status for r in all_runs(app)]
    assert statuses == ["abandoned", "succeeded", "succeeded"]


def test_mariadb_killed_at_a_random_moment(maria):
    app, databases, source_engine, archive_engine = maria
    original, qualifying = _maria_setup(app, source_engine, n_old=3000, batch_size=5)
    returncode, _out, _err = _signal_at_first_batch(databases, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    _assert_whole_batches(source_engine, archive_engine, original, 5, databases.env["IN_SERVER_MOVES"] == "true")
    _rerun_finishes(app, databases, source_engine, archive_engine, original, qualifying)


def test_mariadb_stops_cleanly_on_sigterm(maria):
    app, databases, source_engine, archive_engine = maria
    original, qualifying = _maria_setup(app, source_engine, n_old=3000, batch_size=5)
    returncode, out, err = _signal_at_first_batch(databases, signal.SIGTERM)
    src, arc = source_rows(source_engine, "orders"), archived(archive_engine, "orders")
    assert_no_loss(original, src, arc)
    assert not set(src) & set(arc)  # a clean stop finishes every batch in flight
    if returncode == 130:
        (run,) = all_runs(app)
        assert run.status == "interrupted" and run.rows_deleted == len(arc)
    else:
        assert returncode == 0, out + err
    _rerun_finishes(app, databases, source_engine, archive_engine, original, qualifying)
