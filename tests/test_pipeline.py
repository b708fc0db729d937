"""Pipelined batches (engine/pipeline.py): consecutive batches overlap on two source connections.

A pipelined run must store exactly what a run of one batch after another stores, keep
each batch's protocol (copy committed before its source DELETE), and leave every row in
the source or the archive whatever fails — the archive write of a batch, its DELETE, or
a stop request — with the next run finishing the job. On MariaDB (in-server moves off)
and on a PostgreSQL source; SQLite sources never pipeline (one writer at a time).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table, plan_table
from archiver.engine.connections import make_engine
from archiver.engine.backends import ArchiveOps, archive_ops_for, source_ops_for
from archiver.engine.errors import DatabaseError
from archiver.engine.policy import PolicySpec
from tests.engine_support import NOW, archived, assert_no_loss, make_orders, postgres_only, source_rows
from tests.mariadb_support import pad_table

SPEC = PolicySpec("orders", batch_size=7)

# Small tables here: batches overlap anyway (a deadlock between two DELETEs in flight is then
# possible, and redone alone); tests/test_in_server.py checks a table at the real threshold.
pytestmark = pytest.mark.usefixtures("overlap_small_tables")


def old_and_new(n_old: int) -> list:
    return [NOW - timedelta(days=90, minutes=i) for i in range(n_old)] + [NOW - timedelta(days=1)] * 3


def moved(original: dict, n_old: int) -> dict:
    """What the archive holds once every old row (ids 1..n_old) has moved."""
    return {k: v for k, v in original.items() if int(k) <= n_old}


def maria_pair(server) -> tuple[sa.Engine, sa.Engine]:
    source, archive = server.database()[1], server.database()[1]
    schema.metadata.create_all(archive)
    return source, archive


def run(source: sa.Engine, archive: sa.Engine, **kw):
    return archive_table(source, archive, kw.pop("spec", SPEC), now=NOW, run_id=3, in_server=False, **kw)


def stored(archive: sa.Engine) -> dict:
    ar = schema.archived_rows
    with archive.connect() as conn:
        rows = conn.execute(sa.select(ar.c.source_pk, ar.c.payload, ar.c.row_date, ar.c.archived_at, ar.c.run_id)
                            .where(ar.c.table_name == "orders")).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_mariadb_pipelined_run_stores_what_one_batch_at_a_time_stores(server):
    results, archives = {}, {}
    for pipelined in (True, False):
        source, archive = maria_pair(server)
        make_orders(source, old_and_new(40))
        original = source_rows(source, "orders")
        results[pipelined] = run(source, archive, pipeline=pipelined)
        archives[pipelined] = archive
        src, arc = source_rows(source, "orders"), archived(archive, "orders")
        assert len(arc) == 40 and len(src) == 3
        assert_no_loss(original, src, arc)
    assert results[True].extra.get("pipelined") is True and "pipelined" not in results[False].extra
    assert stored(archives[True]) == stored(archives[False])
    for r in results.values():
        assert (r.rows_read, r.rows_archived, r.rows_deleted, r.batches) == (40, 40, 40, 6)


@postgres_only
def test_postgres_source_pipelines_into_a_non_streaming_archive(engines, tmp_path):
    archive = make_engine(f"sqlite:///{tmp_path / 'archive.db'}")
    schema.metadata.create_all(archive)
    try:
        make_orders(engines.source, old_and_new(30))
        original = source_rows(engines.source, "orders")
        progress = []
        result = run(engines.source, archive, on_batch=progress.append)
        assert result.extra.get("pipelined") is True and result.rows_deleted == 30
        assert [p.total_rows for p in progress] == [7, 14, 21, 28, 30]
        assert_no_loss(original, source_rows(engines.source, "orders"), archived(archive, "orders"))
        assert len(archived(archive, "orders")) == 30
    finally:
        archive.dispose()


def test_sqlite_runs_one_batch_at_a_time_and_postgres_streams_pipelined(engines):
    """SQLite: one writer at a time. PostgreSQL -> PostgreSQL: each batch streams from the SELECT
    into COPY, and its DELETE overlaps the next batch; MariaDB -> MariaDB (in-server moves off):
    batches overlap on two source connections. The same rows as one at a time."""
    stored_by = {}
    for pipelined in (True, False):
        make_orders(engines.source, old_and_new(40), name="orders")
        original = source_rows(engines.source, "orders")
        result = run(engines.source, engines.archive, pipeline=pipelined)
        assert ("pipelined" in result.extra) is (pipelined and engines.backend != "sqlite")
        assert result.rows_deleted == 40 and result.batches == 6
        assert_no_loss(original, source_rows(engines.source, "orders"), archived(engines.archive, "orders"))
        stored_by[pipelined] = stored(engines.archive)
        with engines.source.begin() as conn:
            conn.exec_driver_sql("DROP TABLE orders")
        with engines.archive.begin() as conn:
            conn.execute(schema.archived_rows.delete())
    assert stored_by[True] == stored_by[False]


@postgres_only
def test_postgres_stop_and_archive_failure_in_a_streamed_pipeline(engines):
    make_orders(engines.source, old_and_new(60))
    original = source_rows(engines.source, "orders")
    progress = []
    result = run(engines.source, engines.archive, should_stop=lambda: len(progress) >= 2, on_batch=progress.append)
    assert result.stopped and result.extra.get("pipelined") is True
    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    assert not set(src) & set(arc) and len(arc) == result.rows_deleted == 7 * result.batches
    with pytest.raises(DatabaseError, match="archive database error"):
        run(engines.source, engines.archive, archive_ops=FailingArchive(engines.archive, fail_on=2))
    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    assert_no_loss(original, src, arc)
    assert not set(src) & set(arc)
    run(engines.source, engines.archive)
    assert archived(engines.archive, "orders") == moved(original, 60)


class FailingArchive:
    """Archive ops whose upsert fails on the n-th batch."""

    def __new__(cls, engine: sa.Engine, fail_on: int) -> ArchiveOps:
        ops = archive_ops_for(engine)
        calls = {"n": 0}

        def failing(real):
            def write(conn, table_name, records, archived_at, run_id):
                calls["n"] += 1
                if calls["n"] == fail_on:
                    raise sa.exc.OperationalError("INSERT", {}, Exception("archive went away"))
                return real(conn, table_name, records, archived_at, run_id)
            return write

        ops.upsert, ops.upsert_stream = failing(ops.upsert), failing(ops.upsert_stream)
        if hasattr(ops, "copy_in"):  # PostgreSQL's COPY passthrough
            real_copy_in = ops.copy_in

            def copy_in(conn, source):
                calls["n"] += 1
                if calls["n"] == fail_on:
                    raise sa.exc.OperationalError("COPY", {}, Exception("archive went away"))
                return real_copy_in(conn, source)

            ops.copy_in = copy_in
        return ops


def test_an_archive_failure_leaves_the_batch_in_the_source(server):
    source, archive = maria_pair(server)
    make_orders(source, old_and_new(40))
    original = source_rows(source, "orders")
    with pytest.raises(DatabaseError, match="archive database error"):
        run(source, archive, archive_ops=FailingArchive(archive, fail_on=3))
    src, arc = source_rows(source, "orders"), archived(archive, "orders")
    assert_no_loss(original, src, arc)
    assert len(arc) == 14 and not set(src) & set(arc)  # batches 1-2 moved; 3 and the prefetched 4 rolled back
    assert run(source, archive).rows_deleted == 26
    assert archived(archive, "orders") == moved(original, 40) and len(source_rows(source, "orders")) == 3


def test_a_failed_delete_leaves_its_rows_in_both_places_until_the_next_run(server):
    source, archive = maria_pair(server)
    make_orders(source, old_and_new(40))
    original = source_rows(source, "orders")
    ops = source_ops_for(source)
    real, calls = ops.delete_keys, {"n": 0}

    def delete_keys(conn, plan, keys):
        calls["n"] += 1
        if calls["n"] == 2:
            raise sa.exc.OperationalError("DELETE", {}, Exception("lock wait timeout"))
        return real(conn, plan, keys)

    ops.delete_keys = delete_keys
    with pytest.raises(DatabaseError, match="source database error"):
        run(source, archive, source_ops=ops)
    src, arc = source_rows(source, "orders"), archived(archive, "orders")
    assert_no_loss(original, src, arc)
    assert len(set(src) & set(arc)) == 7  # batch 2: archived (committed), its DELETE rolled back
    result = run(source, archive)
    assert result.rows_deleted == 40 - (len(arc) - 7)  # batch 2 is moved again (upsert), then deleted
    assert archived(archive, "orders") == moved(original, 40) and len(source_rows(source, "orders")) == 3


def test_a_stop_request_ends_the_pipeline_between_batches(server):
    source, archive = maria_pair(server)
    make_orders(source, old_and_new(60))
    original = source_rows(source, "orders")
    progress = []
    result = run(source, archive, should_stop=lambda: len(progress) >= 2, on_batch=progress.append)
    assert result.stopped and result.extra.get("pipelined") is True
    src, arc = source_rows(source, "orders"), archived(archive, "orders")
    assert_no_loss(original, src, arc)
    assert not set(src) & set(arc) and len(arc) == result.rows_deleted == 7 * result.batches
    assert [p.batch for p in progress] == list(range(1, result.batches + 1))
    run(source, archive)
    assert archived(archive, "orders") == moved(original, 60)


def test_sources_that_say_so_run_one_batch_at_a_time(server):
    source, archive = maria_pair(server)
    make_orders(source, old_and_new(10))
    ops = source_ops_for(source)
    ops.overlaps = lambda plan, conn: False
    result = run(source, archive, source_ops=ops)
    assert "pipelined" not in result.extra and result.rows_deleted == 10


@postgres_only
def test_postgres_copy_passthrough_redoes_what_the_archive_refuses(engines):
    """PostgreSQL → PostgreSQL batches go COPY to COPY as bytes; a batch holding a row archived
    already (a crash of an earlier run) or a value the server cannot render (infinity) is refused
    by the archive's COPY, rolled back, and moved the generic way (upsert, Python encoder)."""
    make_orders(engines.source, [NOW - timedelta(days=90, minutes=i) for i in range(30)])
    with engines.source.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET created_at = '-infinity' WHERE id = 17")
    original = source_rows(engines.source, "orders")
    stale = dict(original["9"], note="stale copy")
    with engines.archive.begin() as conn:
        conn.execute(schema.archived_rows.insert(), [{"table_name": "orders", "source_pk": "9", "payload": stale,
                                                      "archived_at": NOW, "run_id": 1}])
    result = run(engines.source, engines.archive)
    assert result.extra.get("piped") is True and result.extra["redone"] == 2  # batches 2 (id 9) and 3 (id 17)
    assert result.rows_deleted == 30 and source_rows(engines.source, "orders") == {}
    assert archived(engines.archive, "orders") == original
    assert stored(engines.archive)["9"][3] == 3 and stored(engines.archive)["20"][3] == 3  # run 3 wrote them all


@pytest.mark.parametrize("fast", [True, False], ids=["literal-keys", "bound-keys"])
def test_a_mariadb_key_list_delete_waits_for_no_row_outside_its_list(server, fast):
    """The DELETE of one batch must not touch the rows the batch beside it holds, even where the
    server would rather scan the table than look the keys up (10,000 keys of 20,000 rows): a
    scan would wait for those rows, and the other batch's DELETE for this one's, a deadlock."""
    source = server.database()[1]
    with source.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id BIGINT PRIMARY KEY, created_at DATETIME NOT NULL, "
                             "note VARCHAR(20)) ENGINE=InnoDB")
        conn.commit()
    pad_table(source, "orders", 1, 20_000, "TIMESTAMP'2020-01-01 00:00:00', 'x'")
    ops = source_ops_for(source)
    ops.fast_enabled = fast
    plan = plan_table(source, PolicySpec("orders", batch_size=10_000), NOW, ops)
    with source.connect() as other, source.connect() as conn:
        held = other.exec_driver_sql("SELECT id FROM orders WHERE id > 10000 FOR UPDATE").all()
        assert len(held) == 10_000  # the next batch, locked on the other connection
        conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        assert ops.delete_keys(conn, plan, [(k,) for k in range(1, 10_001)]) == 10_000
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM orders").scalar() == 10_000
        conn.rollback()
        other.rollback()
