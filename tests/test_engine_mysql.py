"""MySQL/MariaDB as a source (and as an archive): small; on TEST_MARIADB_URL's server, else the local one
(skipped when none answers, failed under CI=true)."""
from __future__ import annotations

import os

import base64
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table
from archiver.engine.connections import make_engine
from archiver.engine.lease import TableLock
from archiver.engine.policy import PolicySpec
from archiver.engine.purge import purge_table
from tests.conftest import drop_mariadb_databases, mariadb_url, url_for_database
from tests.engine_support import NOW, archived, assert_no_loss, source_rows


@pytest.fixture
def mysql_db():
    """A throwaway database on the MariaDB/MySQL server of the tests (see tests/conftest.py)."""
    base = mariadb_url()
    name = f"archiver_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    engine = make_engine(url_for_database(base, name))
    try:
        yield engine
    finally:
        engine.dispose()
        drop_mariadb_databases(admin, [name])
        admin.dispose()


def _make_source(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("""CREATE TABLE events (
            region VARCHAR(8) NOT NULL, seq INT NOT NULL, created_at DATETIME(6) NOT NULL,
            stamped TIMESTAMP(6) NULL, amount DECIMAL(12, 4), raw BLOB, doc JSON, flag TINYINT(1),
            note TEXT, PRIMARY KEY (region, seq)) ENGINE=InnoDB""")
        rows = []
        for region in ("eu", "us"):
            for seq in range(1, 8):
                created = NOW.replace(tzinfo=None) - (timedelta(days=90) if seq != 4 else timedelta(0))
                rows.append({"r": region, "s": seq, "c": created, "t": created, "a": "12.3400",
                             "raw": b"\x00\xff", "doc": '{"k": [1, 2]}', "f": seq % 2, "n": None})
        conn.execute(sa.text("INSERT INTO events VALUES (:r, :s, :c, :t, :a, :raw, :doc, :f, :n)"), rows)


def test_mariadb_source_to_sqlite_archive(mysql_db, tmp_path):
    archive = make_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    schema.metadata.create_all(archive)
    try:
        _make_source(mysql_db)
        original = source_rows(mysql_db, "events")
        result = archive_table(mysql_db, archive, PolicySpec("events", archive_after_days=30, batch_size=3),
                               now=NOW)
        assert result.rows_deleted == 12
        src, arc = source_rows(mysql_db, "events"), archived(archive, "events")
        assert sorted(src) == ['["eu",4]', '["us",4]']
        assert_no_loss(original, src, arc)
        row = arc['["eu",1]']
        assert row["amount"] == "12.3400" and row["raw"] == base64.b64encode(b"\x00\xff").decode()
        assert row["created_at"] == (NOW - timedelta(days=90)).replace(tzinfo=None).isoformat()
        assert archive_table(mysql_db, archive, PolicySpec("events", batch_size=3), now=NOW).rows_deleted == 0
    finally:
        archive.dispose()


def test_mariadb_as_archive_with_lease_and_purge(mysql_db, tmp_path):
    source = make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    schema.metadata.create_all(mysql_db)
    try:
        with source.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, created_at TEXT, note TEXT)")
            conn.execute(sa.text("INSERT INTO orders VALUES (:i, :c, :n)"),
                         [{"i": i, "c": "2025-01-01T00:00:00", "n": f"n{i}"} for i in range(1, 11)])
        lease = TableLock(mysql_db, "orders", holder="a")
        other = TableLock(mysql_db, "orders", holder="b")
        assert lease.acquire() and not other.acquire() and other.blocker.pid == os.getpid()
        result = archive_table(source, mysql_db, PolicySpec("orders", batch_size=4), now=NOW, lease=lease)
        assert result.rows_deleted == 10 and len(archived(mysql_db, "orders")) == 10
        # GET_LOCK dies with its session: the holder's connection ends (its process was killed).
        with mysql_db.connect() as conn:
            conn.exec_driver_sql(f"KILL {lease._conn.connection.dbapi_connection.thread_id()}")
        assert other.acquire() and other.taken_over is not None and other.current_holder().pid == os.getpid()
        with pytest.raises(Exception, match="lost"):
            lease._beat_at = 0
            lease.renew()
        other.release()
        purged = purge_table(mysql_db, PolicySpec("orders", delete_after_days=1, batch_size=3),
                             now=NOW + timedelta(days=1, seconds=1))
        assert purged.rows_deleted == 10 and purged.batches == 4
        assert archived(mysql_db, "orders") == {}
    finally:
        source.dispose()


def test_a_varchar_date_column_is_refused_naming_it_and_a_value(mysql_db):
    from archiver.engine.archive import plan_table
    from archiver.engine.errors import UnsupportedDateColumn
    with mysql_db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INT PRIMARY KEY, created_at DATETIME, note VARCHAR(200)) "
                             "ENGINE=InnoDB")
        conn.exec_driver_sql("INSERT INTO notes VALUES (1, '2020-01-01', 'note 1'), (2, '2020-01-02', '2024-01-01')")
    with pytest.raises(UnsupportedDateColumn) as info:
        plan_table(mysql_db, PolicySpec("notes", date_column="note"), NOW)
    (message,) = info.value.problems["date_column"]
    assert "'note'" in message and "'note 1'" in message and "VARCHAR(200)" in message
    assert plan_table(mysql_db, PolicySpec("notes"), NOW).date_column.name == "created_at"


# SQLAlchemy reflects MySQL/MariaDB DOUBLE (and REAL) with asdecimal=True and a decimal return scale
# of 10: read that way, a DOUBLE was archived as a decimal string rounded to 10 places (1.5e-12 became
# "0E-10") and the source row deleted. The MySQL backend reflects them as floats.
def test_mariadb_double_columns_are_archived_exactly(mysql_db, tmp_path):
    archive = make_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    schema.metadata.create_all(archive)
    try:
        with mysql_db.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE measures (id INT PRIMARY KEY, x DOUBLE, created_at DATETIME)")
            conn.exec_driver_sql("INSERT INTO measures VALUES (1, 1.5e-12, '2020-01-01'), (2, 0.1, '2020-01-01')")
        archive_table(mysql_db, archive, PolicySpec("measures", archive_after_days=30), now=NOW)
        assert {pk: row["x"] for pk, row in archived(archive, "measures").items()} == {"1": 1.5e-12, "2": 0.1}
    finally:
        archive.dispose()
