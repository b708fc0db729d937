"""A request that changes something takes the archive's write lock before its first query on SQLite:
a run committing a batch between the request's read and its write makes it wait its turn, not fail
with "database is locked" (a 500). PostgreSQL and MariaDB lock rows and need nothing of the kind."""
from __future__ import annotations

import threading

import sqlalchemy as sa

from archiver.extensions import db
from archiver.models import User
from tests.app_support import PASSWORD
from tests.auth_support import login
from tests.engine_support import sqlite_only


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
