"""archive_table: exactly the qualifying rows move, in keyset batches, never lost (SQLite and PostgreSQL)."""
from __future__ import annotations

import threading
from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table, count_archivable
from archiver.engine.criteria import compile_criteria
from archiver.engine.errors import ColumnNotFound, NoPrimaryKey, TableNotFound
from archiver.engine.policy import PolicySpec, archive_cutoff
from tests.mariadb_support import overlap_small_tables  # noqa: F401 - fixture
from tests.engine_support import (NOW, archived, archived_meta, as_utc, assert_no_loss, engines,  # noqa: F401
                                  make_orders, old_dates, reflect, source_rows)

SPEC = PolicySpec("orders", date_column="created_at", archive_after_days=30, batch_size=1000)


def test_exactly_the_rows_strictly_older_than_the_cutoff_move(engines):
    cutoff = archive_cutoff(SPEC, NOW)
    assert cutoff == NOW - timedelta(days=30)
    dates = [
        cutoff - timedelta(days=400),          # 1 moves
        cutoff - timedelta(seconds=1),         # 2 moves
        cutoff - timedelta(microseconds=1),    # 3 moves (strictly older)
        cutoff,                                # 4 stays (equal to the cutoff)
        cutoff + timedelta(microseconds=1),    # 5 stays
        NOW,                                   # 6 stays
        None,                                  # 7 stays (no date: never archived)
    ]
    make_orders(engines.source, dates)
    original = source_rows(engines.source, "orders")

    result = archive_table(engines.source, engines.archive, SPEC, now=NOW, run_id=77)

    assert (result.rows_read, result.rows_archived, result.rows_deleted, result.batches) == (3, 3, 3, 1)
    assert result.cutoff == cutoff
    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    assert sorted(arc) == ["1", "2", "3"]
    assert sorted(src, key=int) == ["4", "5", "6", "7"]
    assert_no_loss(original, src, arc)
    meta = archived_meta(engines.archive, "orders")
    assert as_utc(meta["2"].row_date) == cutoff - timedelta(seconds=1)
    assert as_utc(meta["1"].archived_at) == NOW
    assert meta["1"].run_id == 77


def test_cutoff_is_truncated_to_the_second():
    now = NOW + timedelta(microseconds=999_999)
    assert archive_cutoff(SPEC, now) == NOW - timedelta(days=30)
    assert archive_cutoff(PolicySpec("t", archive_after_days=0), now).tzinfo == timezone.utc


def test_batches_walk_the_primary_key_and_report_progress(engines):
    make_orders(engines.source, old_dates(25))
    original = source_rows(engines.source, "orders")
    seen = []
    spec = PolicySpec("orders", archive_after_days=30, batch_size=4)

    result = archive_table(engines.source, engines.archive, spec, now=NOW, on_batch=seen.append)

    assert result.rows_deleted == 25 and result.batches == 7
    assert [p.rows for p in seen] == [4, 4, 4, 4, 4, 4, 1]
    assert [p.total_rows for p in seen] == [4, 8, 12, 16, 20, 24, 25]
    assert {p.kind for p in seen} == {"archive"}
    assert source_rows(engines.source, "orders") == {}
    assert archived(engines.archive, "orders") == original


def test_a_second_run_moves_nothing(engines):
    make_orders(engines.source, old_dates(10) + [NOW])
    first = archive_table(engines.source, engines.archive, SPEC, now=NOW)
    second = archive_table(engines.source, engines.archive, SPEC, now=NOW)
    assert first.rows_deleted == 10
    assert (second.rows_read, second.rows_archived, second.rows_deleted, second.batches) == (0, 0, 0, 0)
    assert len(archived(engines.archive, "orders")) == 10


def test_dry_run_counts_and_moves_nothing(engines):
    make_orders(engines.source, old_dates(6) + [NOW, NOW])
    before = source_rows(engines.source, "orders")
    result = archive_table(engines.source, engines.archive, SPEC, now=NOW, dry_run=True)
    assert result.would_archive == 6 and result.rows_deleted == 0
    assert count_archivable(engines.source, SPEC, now=NOW) == (6, archive_cutoff(SPEC, NOW))
    assert source_rows(engines.source, "orders") == before
    assert archived(engines.archive, "orders") == {}


def test_composite_primary_key(engines):
    md = sa.MetaData()
    table = sa.Table("events", md,
                     sa.Column("region", sa.String(8), primary_key=True),
                     sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                     sa.Column("body", sa.Text))
    md.create_all(engines.source)
    old = NOW - timedelta(days=90)
    rows = [{"region": r, "seq": s, "created_at": old if s != 3 else NOW, "body": f"{r}{s}"}
            for r in ("eu", "us", "ap") for s in range(1, 6)]
    with engines.source.begin() as conn:
        conn.execute(table.insert(), rows)
    original = source_rows(engines.source, "events")
    spec = PolicySpec("events", archive_after_days=30, batch_size=4)

    result = archive_table(engines.source, engines.archive, spec, now=NOW)

    assert result.rows_deleted == 12 and result.batches == 3
    arc = archived(engines.archive, "events")
    assert '["eu",1]' in arc and '["eu",3]' not in arc
    src = source_rows(engines.source, "events")
    assert sorted(src) == ['["ap",3]', '["eu",3]', '["us",3]']
    assert_no_loss(original, src, arc)


def test_table_without_primary_key_is_refused_untouched(engines):
    md = sa.MetaData()
    table = sa.Table("logs", md, sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("msg", sa.Text))
    md.create_all(engines.source)
    with engines.source.begin() as conn:
        conn.execute(table.insert(), [{"created_at": NOW - timedelta(days=99), "msg": "old"}])
    with pytest.raises(NoPrimaryKey, match="no primary key"):
        archive_table(engines.source, engines.archive, PolicySpec("logs", archive_after_days=1), now=NOW)
    with engines.source.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1
    assert archived(engines.archive, "logs") == {}


def test_missing_table_and_column_are_clear_errors(engines):
    make_orders(engines.source, [NOW])
    with pytest.raises(TableNotFound, match="'nope' does not exist"):
        archive_table(engines.source, engines.archive, PolicySpec("nope"), now=NOW)
    with pytest.raises(ColumnNotFound, match="'updated_at'"):
        archive_table(engines.source, engines.archive, PolicySpec("orders", date_column="updated_at"), now=NOW)


def test_custom_criteria_only_narrows(engines):
    table = reflect_after_make(engines)
    assert compile_criteria("status = 'closed'", table) is not None
    spec = PolicySpec("orders", archive_after_days=30, custom_criteria="status = 'closed'")
    result = archive_table(engines.source, engines.archive, spec, now=NOW)
    # old+closed move; old+open and new+closed stay: the criteria never widen the age filter.
    assert result.rows_deleted == 2
    assert sorted(archived(engines.archive, "orders")) == ["1", "3"]
    assert sorted(source_rows(engines.source, "orders"), key=int) == ["2", "4", "5"]


def reflect_after_make(engines) -> sa.Table:
    old = NOW - timedelta(days=60)
    make_orders(engines.source, [old, old, old, NOW, NOW], statuses=["closed", "open", "closed", "closed", "open"])
    return reflect(engines.source, "orders")


def test_stop_request_ends_between_batches(engines):
    make_orders(engines.source, old_dates(20))
    original = source_rows(engines.source, "orders")
    batches = []
    spec = PolicySpec("orders", archive_after_days=30, batch_size=3)

    result = archive_table(engines.source, engines.archive, spec, now=NOW,
                           on_batch=batches.append, should_stop=lambda: len(batches) >= 2)

    # One batch after another, the stop comes after batch 2; pipelined (PostgreSQL), batch 3 may
    # already be on its way when batch 2 is reported, and is finished, not cut.
    expected = (2, 3) if "pipelined" in result.extra else (2,)
    assert result.stopped and result.batches in expected and result.rows_deleted == 3 * result.batches
    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    assert len(arc) == result.rows_deleted and len(src) == 20 - result.rows_deleted
    assert not set(src) & set(arc)
    assert_no_loss(original, src, arc)


class Boom(RuntimeError):
    pass


def _fail_at(point: str, nth: int = 1):
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == nth:
                raise Boom(point)
    return hook


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("point", ["after_select", "after_archive_commit", "after_source_delete"])
def test_failure_inside_a_batch_loses_nothing_and_the_next_run_reconciles(engines, point, pipeline):
    make_orders(engines.source, old_dates(10))
    original = source_rows(engines.source, "orders")
    spec = PolicySpec("orders", archive_after_days=30, batch_size=3)

    with pytest.raises(Boom):
        archive_table(engines.source, engines.archive, spec, now=NOW, checkpoint=_fail_at(point, 2),
                      pipeline=pipeline)

    src, arc = source_rows(engines.source, "orders"), archived(engines.archive, "orders")
    assert_no_loss(original, src, arc)
    # The failed batch's source transaction rolled back: its rows are still in the source; its
    # copies are archived when the archive commit came before the failure.
    failed_batch = {"4", "5", "6"}
    assert failed_batch <= set(src)
    assert (failed_batch <= set(arc)) is (point != "after_select")
    if not pipeline or engines.backend == "sqlite":  # one batch after another: nothing after it ran
        assert len(src) == 7
        assert len(arc) == (3 if point == "after_select" else 6)
    else:  # PostgreSQL pipelines: the batch in flight beside it may have finished (moved whole)
        assert len(src) in (7, 4)
        assert not (set(src) & set(arc)) - failed_batch

    again = archive_table(engines.source, engines.archive, spec, now=NOW)
    assert again.rows_deleted == len(src)
    assert source_rows(engines.source, "orders") == {}
    assert archived(engines.archive, "orders") == original


@pytest.mark.parametrize("pipeline", [False, True])
def test_rows_updated_while_the_job_runs_are_never_lost(engines, pipeline, overlap_small_tables):
    """Another connection updates rows during the run: each row ends up either in the source
    (with its latest values) or archived with exactly its latest committed values.

    Pipelined (PostgreSQL, and MariaDB with this small table allowed to: batches overlap; SQLite
    never pipelines), the next batch may be
    locked already when a batch is reported, so the later edits run on their own thread and
    land before that batch reads the row (their values are archived) or after it moved it
    (they find no row)."""
    make_orders(engines.source, old_dates(12))
    table = reflect(engines.source, "orders")
    spec = PolicySpec("orders", archive_after_days=30, batch_size=4)
    writer = sa.create_engine(engines.source.url, poolclass=sa.pool.NullPool)
    if engines.backend == "sqlite":
        from archiver.engine.connections import configure_engine
        configure_engine(writer)
    blocked_update: dict[str, object] = {}
    edits: dict[str, int] = {}
    threads: list[threading.Thread] = []

    def update(conn, row_id: int, **values) -> int:
        return conn.execute(sa.update(table).where(table.c.id == row_id).values(**values)).rowcount

    def on_checkpoint(name: str) -> None:
        if name == "after_archive_commit" and "thread" not in blocked_update:
            # Batch 1 (ids 1-4) is archived and still locked in the source: an update of id 2
            # from another connection must wait for the job's delete and then find no row.
            def run() -> None:
                with writer.begin() as conn:
                    blocked_update["rowcount"] = update(conn, 2, note="late edit")
            t = threading.Thread(target=run)
            t.start()
            blocked_update["thread"] = t
            t.join(timeout=0.5)  # it cannot finish while the batch holds its locks
            blocked_update["finished_early"] = not t.is_alive()

    def later_edits() -> None:
        for key, row_id, values in (("6", 6, {"note": "edited before its batch", "amount": "999.99"}),
                                    ("9", 9, {"created_at": NOW})):  # no longer qualifies: stays
            with writer.begin() as conn:
                edits[key] = update(conn, row_id, **values)

    def on_batch(progress) -> None:
        if progress.batch == 1:
            if pipeline and engines.backend != "sqlite":
                threads.append(threading.Thread(target=later_edits))
                threads[-1].start()
            else:
                later_edits()  # batch 2 is not selected yet
                assert edits == {"6": 1, "9": 1}

    try:
        # in_server=False: on MariaDB the batches overlap through the service like PostgreSQL's (in-server
        # moves, one transaction per batch, have tests of their own in test_in_server.py).
        result = archive_table(engines.source, engines.archive, spec, now=NOW, pipeline=pipeline, in_server=False,
                               checkpoint=on_checkpoint, on_batch=on_batch)
        blocked_update["thread"].join(timeout=60)
        for t in threads:
            t.join(timeout=60)
    finally:
        writer.dispose()

    assert ("pipelined" in result.extra) is (pipeline and engines.backend != "sqlite")
    assert blocked_update["finished_early"] is False
    assert blocked_update["rowcount"] == 0  # the row was gone (archived with the values it had)
    arc = archived(engines.archive, "orders")
    src = source_rows(engines.source, "orders")
    assert arc["2"]["note"] == "row 2"
    if edits["6"]:
        assert arc["6"]["note"] == "edited before its batch" and arc["6"]["amount"] == "999.99"
    else:
        assert arc["6"]["note"] == "row 6"
    assert list(src) == (["9"] if edits["9"] else [])
    assert result.rows_deleted == len(arc) == 12 - len(src)


def test_source_and_archive_in_one_sqlite_file(tmp_path):
    from archiver.engine.connections import make_engine
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    other = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        schema.metadata.create_all(engine)
        make_orders(engine, old_dates(7) + [NOW])
        original = source_rows(engine, "orders")
        result = archive_table(engine, other, PolicySpec("orders", batch_size=3), now=NOW)
        assert result.rows_deleted == 7
        src, arc = source_rows(engine, "orders"), archived(other, "orders")
        assert list(src) == ["8"] and len(arc) == 7
        assert_no_loss(original, src, arc)
    finally:
        engine.dispose()
        other.dispose()


def test_archived_rows_index_and_constraints_exist(engines):
    insp = sa.inspect(engines.archive)
    uniques = insp.get_unique_constraints("archived_rows")
    assert any(set(u["column_names"]) == {"table_name", "source_pk"} for u in uniques)
    assert {c["name"] for c in insp.get_columns("table_locks")} >= {"table_name", "kind", "holder", "run_id", "host",
                                                                   "pid", "acquired_at", "heartbeat_at"}
