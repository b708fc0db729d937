"""Crash safety with children: `flask archive-now` SIGKILLed at points of a batch that moves orders with
their items and notes (after the archive commit, between the child and parent DELETEs, after all DELETEs
before the source commit). Nothing is lost; after a rerun every row of every table is in exactly one place."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import JWT_SECRET
from tests.engine_support import add_policy, archived, source_rows
from tests.relational_support import assert_each_row_in_one_place, fill_orders, orders_schema, snapshot

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("orders", "order_items", "item_notes")


def archive_now(databases, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVER_", "FLASK_", "IN_SERVER_"))}
    env.update({"ARCHIVER_ENV": "testing", "SOURCE_DATABASE_URL": databases.source_url,
                "ARCHIVE_DATABASE_URL": databases.archive_url, "JWT_SECRET_KEY": JWT_SECRET,
                "PYTHONPATH": str(ROOT)})
    if fault:
        env["ARCHIVER_FAULT_POINT"] = fault
    return subprocess.run([sys.executable, "-m", "flask", "--app", "archiver", "archive-now"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fault", ["after_archive_commit:2", "after_child_delete:2", "after_source_delete:2"])
def test_killed_mid_batch_with_children_loses_nothing(app, databases, source_engine, archive_engine, fault):
    md, orders, items, notes = orders_schema()
    md.create_all(source_engine)
    today = datetime.now(timezone.utc).replace(tzinfo=None)
    fill_orders(source_engine, orders, items, notes, n=20, old=today - timedelta(days=90),
                new=today + timedelta(days=1))
    add_policy(app, "orders", batch_size=4)
    original = snapshot(source_engine, *TABLES)

    killed = archive_now(databases, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    for table, rows in original.items():  # nothing lost; the killed batch may be in both places
        src, arc = source_rows(source_engine, table), archived(archive_engine, table)
        assert set(src) | set(arc) == set(rows), table
        assert all(payload == rows[pk] for pk, payload in arc.items())

    done = archive_now(databases)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_each_row_in_one_place(source_engine, archive_engine, original)
    assert sorted(map(int, source_rows(source_engine, "orders"))) == [4, 8, 12, 16, 20]
    assert len(archived(archive_engine, "order_items")) == 45 and len(archived(archive_engine, "item_notes")) == 30
