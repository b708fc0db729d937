"""purge_table: only expired archived rows of the right table go, in bounded batches."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.policy import PolicySpec, purge_cutoff
from archiver.engine.purge import purge_table
from tests.engine_support import NOW

AR = schema.archived_rows


def _seed(engine: sa.Engine, table: str, ages: dict[str, timedelta]) -> None:
    with engine.begin() as conn:
        conn.execute(AR.insert(), [{"table_name": table, "source_pk": pk, "payload": {"id": pk},
                                    "row_date": NOW - timedelta(days=500), "archived_at": NOW - age}
                                   for pk, age in ages.items()])


def _pks(engine: sa.Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(AR.c.source_pk).where(AR.c.table_name == table)).scalars())


def test_purge_removes_only_expired_rows_of_that_table(engines):
    spec = PolicySpec("orders", delete_after_days=10, batch_size=1000)
    cutoff = purge_cutoff(spec, NOW)
    assert cutoff == NOW - timedelta(days=10)
    _seed(engines.archive, "orders", {
        "1": timedelta(days=400),
        "2": timedelta(days=10, seconds=1),
        "3": timedelta(days=10, microseconds=1),   # strictly older than the cutoff: purged
        "4": timedelta(days=10),                   # exactly at the cutoff: kept
        "5": timedelta(days=9, hours=23),
        "6": timedelta(0),
    })
    _seed(engines.archive, "customers", {"1": timedelta(days=400), "2": timedelta(days=30)})

    result = purge_table(engines.archive, spec, now=NOW)

    assert result.rows_deleted == 3 and result.cutoff == cutoff
    assert _pks(engines.archive, "orders") == ["4", "5", "6"]
    assert _pks(engines.archive, "customers") == ["1", "2"]
    again = purge_table(engines.archive, spec, now=NOW)
    assert again.rows_deleted == 0 and again.batches == 0


def test_purge_runs_in_bounded_batches_and_reports_progress(engines):
    _seed(engines.archive, "orders", {str(i): timedelta(days=50 + i) for i in range(10)})
    seen = []
    result = purge_table(engines.archive, PolicySpec("orders", delete_after_days=5, batch_size=3),
                         now=NOW, on_batch=seen.append)
    assert result.rows_deleted == 10 and result.batches == 4
    assert [p.rows for p in seen] == [3, 3, 3, 1] and seen[-1].total_rows == 10
    assert {p.kind for p in seen} == {"purge"}
    assert _pks(engines.archive, "orders") == []


def test_purge_dry_run_and_stop(engines):
    _seed(engines.archive, "orders", {str(i): timedelta(days=50) for i in range(7)})
    spec = PolicySpec("orders", delete_after_days=5, batch_size=2)
    dry = purge_table(engines.archive, spec, now=NOW, dry_run=True)
    assert dry.would_purge == 7 and dry.rows_deleted == 0
    assert len(_pks(engines.archive, "orders")) == 7
    batches: list = []
    stopped = purge_table(engines.archive, spec, now=NOW, should_stop=lambda: len(batches) >= 1,
                          on_batch=batches.append)
    assert stopped.stopped and stopped.rows_deleted == 2
    assert len(_pks(engines.archive, "orders")) == 5

