"""A child row inserted by another connection while its parent's batch is in flight is never lost:
it waits for the batch and then fails on its foreign key (the parent is gone) — or, committed
before the batch locked its parent, it is archived with it. Two real connections, on the
databases with row locks (PostgreSQL, MariaDB)."""
from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from archiver.engine import schema
from archiver.engine.archive import archive_table
from archiver.engine.connections import make_engine
from tests.engine_support import NOW, archived, source_rows
from tests.relational_support import fill_orders, orders_schema, spec


#: The databases with row locks (SQLite takes one writer at a time: nothing can be inserted mid-batch).
row_lock_backends = pytest.mark.parametrize("databases", ["postgres", "mariadb"], indirect=True)


@pytest.fixture
def locking_pair(databases):
    """Source and archive engines on a database with row locks."""
    src, arc = make_engine(databases.source_url), make_engine(databases.archive_url)
    yield src, arc
    src.dispose()
    arc.dispose()


@row_lock_backends
@pytest.mark.parametrize("pipeline", [False, True], ids=["one-by-one", "overlapped"])
def test_a_child_inserted_during_the_batch_waits_then_fails_on_its_key(locking_pair, pipeline, overlap_small_tables):
    """Both ways a run moves batches: one by one, and overlapped (the default on PostgreSQL and
    MariaDB, where the next batch is read while this one is written)."""
    source, archive = locking_pair
    schema.metadata.create_all(archive)
    md, orders, items, notes = orders_schema()
    md.create_all(source)
    fill_orders(source, orders, items, notes, n=3)  # orders 1-3 old: one batch
    outcome: dict[str, object] = {}

    def insert_a_late_child() -> None:
        try:
            with source.begin() as conn:
                conn.execute(items.insert(), {"id": 999, "order_id": 2, "sku": "late"})
            outcome["inserted"] = True
        except sa.exc.IntegrityError as exc:  # its parent is gone
            outcome["refused"] = exc
        except sa.exc.OperationalError as exc:  # InnoDB chose it as a deadlock's victim (1213)
            assert exc.orig.args[0] == 1213, exc
            outcome["refused"] = exc

    writer = threading.Thread(target=insert_a_late_child)

    def pause(name: str) -> None:
        if name == "after_select" and not writer.is_alive() and "started" not in outcome:
            outcome["started"] = True
            writer.start()
            time.sleep(1.0)  # the writer now waits on the batch's lock of order 2
            outcome["waited"] = writer.is_alive()

    result = archive_table(source, archive, spec(batch_size=10), now=NOW, checkpoint=pause, pipeline=pipeline)
    writer.join(timeout=60)
    assert outcome["waited"] is True, "the insert did not wait for the batch's row lock"
    assert "refused" in outcome and "inserted" not in outcome, outcome
    assert result.rows_deleted == 3 and result.children == {"order_items": 9, "item_notes": 6}
    assert source_rows(source, "order_items") == {} and "999" not in archived(archive, "order_items")


@row_lock_backends
def test_a_child_committed_before_the_batch_moves_with_its_parent(locking_pair):
    source, archive = locking_pair
    schema.metadata.create_all(archive)
    md, orders, items, notes = orders_schema()
    md.create_all(source)
    fill_orders(source, orders, items, notes, n=3)
    with source.begin() as conn:
        conn.execute(items.insert(), {"id": 999, "order_id": 2, "sku": "early"})
    result = archive_table(source, archive, spec(batch_size=10), now=NOW, pipeline=False)
    assert result.children["order_items"] == 10
    assert archived(archive, "order_items")["999"]["sku"] == "early"
