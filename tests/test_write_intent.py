"""A request that changes something takes the archive's write lock before its first query on SQLite:
a run committing a batch between the request's read and its write makes it wait its turn, not fail
with "database is locked" (a 500). PostgreSQL and MariaDB lock rows and need nothing of the kind."""
from __future__ import annotations

import threading

import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import ArchiveRun, RunStatus, ScheduleCheck, User
from archiver.services import jobs, runs
from tests.app_support import PASSWORD
from tests.auth_support import login
from tests.engine_support import add_policy, make_orders, old_dates, sqlite_only


MARKS = sa.Table("batch_marks", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("at", sa.DateTime, server_default=sa.func.now()))


def commit_a_run_batch(engine: sa.Engine, done: threading.Event) -> None:
    """Another connection (a run's batch) writing the archive and committing."""
    with engine.connect() as conn:
        conn.execute(MARKS.insert().values())
        conn.commit()
    done.set()


@sqlite_only
def test_a_writing_request_that_reads_first_waits_for_a_batch_commit_instead_of_failing(app, accounts):
    accounts.create("alice")
    with app.test_request_context("/users", method="POST"):
        app.preprocess_request()
        engine = db.engines[None]
        MARKS.create(engine)
        user = db.session.execute(sa.select(User).where(User.username == "alice")).scalar_one()  # read first
        done = threading.Event()
        batch = threading.Thread(target=commit_a_run_batch, args=(engine, done))
        batch.start()
        assert not done.wait(0.5)          # the batch waits for the request's transaction…
        user.active = False                # …which writes after its read, and commits
        db.session.commit()
        batch.join(10)
        assert done.is_set()               # then the batch goes on
        app.do_teardown_request()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(MARKS)).scalar() == 1
        assert conn.execute(sa.select(User.active).where(User.username == "alice")).scalar() is False


@sqlite_only
def test_a_reading_request_takes_no_write_lock(app, accounts):
    accounts.create("alice")
    with app.test_request_context("/users", method="GET"):
        app.preprocess_request()
        engine = db.engines[None]
        MARKS.create(engine)
        db.session.execute(sa.select(User)).all()
        done = threading.Event()
        batch = threading.Thread(target=commit_a_run_batch, args=(engine, done))
        batch.start()
        assert done.wait(10)               # a reader never holds a run's batch back
        batch.join()
        db.session.rollback()
        app.do_teardown_request()


def test_login_while_a_run_commits_batches(app, client, accounts):
    """Logins (read the user, then write a token family) all succeed while batches commit."""
    accounts.create("alice")
    engine = _archive(app)
    MARKS.create(engine)
    stop = threading.Event()

    def batches() -> None:
        while not stop.is_set():
            commit_a_run_batch(engine, threading.Event())

    writer = threading.Thread(target=batches)
    writer.start()
    try:
        statuses = [login(client, "alice", PASSWORD).status_code for _ in range(15)]
    finally:
        stop.set()
        writer.join()
    assert statuses == [200] * 15


def _archive(app) -> sa.Engine:
    with app.app_context():
        return db.engines[None]


def test_audited_reads_of_archived_rows_while_a_run_commits_batches(app, client, accounts, archive_engine):
    """A read of archived rows reads, then writes its audit record: on SQLite its read snapshot is
    let go first, so a batch committed in between cannot turn the read into a 500."""
    from tests.archive_helpers import archive_synthetic

    admin = accounts.admin()
    archive_synthetic(archive_engine, "orders", 30)
    MARKS.create(archive_engine)
    stop = threading.Event()

    def batches() -> None:
        while not stop.is_set():
            commit_a_run_batch(archive_engine, threading.Event())

    writer = threading.Thread(target=batches)
    writer.start()
    try:
        answers = [client.get("/archives/orders?limit=5", headers=admin) for _ in range(30)]
    finally:
        stop.set()
        writer.join()
    assert [a.status_code for a in answers] == [200] * 30
    assert all(len(a.get_json()["items"]) == 5 for a in answers)


# --- a run's own records, written from the run's thread (no request around it) ------------------

def _between_read_and_write(engine: sa.Engine, table: str):
    """Once this thread has read ``table`` (its transaction's first SELECT of it), another
    connection commits a batch; returns (done event, thread). The SELECT waits up to 0.5 s for
    that commit: with a DEFERRED transaction it lands, with IMMEDIATE it waits behind ours."""
    done = threading.Event()
    batch = threading.Thread(target=commit_a_run_batch, args=(engine, done))
    me = threading.get_ident()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _read(_conn, _cursor, statement, *_args):
        if threading.get_ident() == me and not batch.is_alive() and not done.is_set() \
                and statement.lstrip().upper().startswith("SELECT") and table in statement:
            batch.start()
            done.wait(0.5)

    return done, batch, _read


@sqlite_only
def test_the_end_of_a_run_is_recorded_when_a_batch_commits_between_its_read_and_its_write(app):
    """The failure CI met: a background run ended while the request that started it wrote its
    audit record; the run's end was lost ("could not record the end") and it stayed 'running'."""
    with app.app_context():
        engine = db.engines[None]
        MARKS.create(engine)
        run_id = runs.start_run("purge", "orders", "api:admin")
        done, batch, listener = _between_read_and_write(engine, "archive_runs")
        try:
            runs.finish_run(run_id, RunStatus.SUCCEEDED.value, runs.RunCounts(rows_deleted=3, batches=1))
        finally:
            sa.event.remove(engine, "after_cursor_execute", listener)
            db.session.remove()
        batch.join(10)
        assert done.is_set()
    with engine.connect() as conn:
        row = conn.execute(sa.select(ArchiveRun.status, ArchiveRun.rows_deleted, ArchiveRun.finished_at)
                           .where(ArchiveRun.id == run_id)).one()
        assert (row.status, row.rows_deleted) == ("succeeded", 3) and row.finished_at is not None
        assert conn.execute(sa.select(sa.func.count()).select_from(MARKS)).scalar() == 1


@sqlite_only
def test_dead_runs_are_closed_when_a_batch_commits_between_their_read_and_their_update(app):
    with app.app_context():
        engine = db.engines[None]
        MARKS.create(engine)
        dead = runs.start_run("archive", "orders", "scheduler")
        ours = runs.start_run("archive", "orders", "scheduler")
        done, batch, listener = _between_read_and_write(engine, "archive_runs")
        try:
            closed = runs.abandon_dead_runs("orders", ours, None)
        finally:
            sa.event.remove(engine, "after_cursor_execute", listener)
            db.session.remove()
        batch.join(10)
        assert closed == [dead] and done.is_set()
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(ArchiveRun.id, ArchiveRun.status)).all())
        assert statuses == {dead: "abandoned", ours: "running"}


@sqlite_only
def test_the_schedulers_note_is_kept_when_a_batch_commits_between_its_read_and_its_write(app, source_engine):
    make_orders(source_engine, old_dates(3))
    add_policy(app, "orders", archive_after_days=0)
    with app.app_context():
        engine = db.engines[None]
        MARKS.create(engine)
        done, batch, listener = _between_read_and_write(engine, "schedule_checks")
        try:
            report = jobs.run_purge("orders", trigger="scheduler")  # nothing expired: a note, no run
        finally:
            sa.event.remove(engine, "after_cursor_execute", listener)
            db.session.remove()
        batch.join(10)
        assert report.outcomes == [] and done.is_set()
    with engine.connect() as conn:
        assert conn.execute(sa.select(ScheduleCheck.table_name, ScheduleCheck.kind, ScheduleCheck.outcome)).all() \
            == [("orders", "purge", "nothing to move")]
