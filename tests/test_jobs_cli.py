"""flask archive-now / purge-now: summaries, progress lines, dry run, exit codes, signals."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from archiver.cli.jobs import StopFlag
from tests.engine_support import add_policy, all_runs, archived, make_orders, old_dates, source_rows


def test_archive_now_moves_rows_and_prints_a_summary(app, runner, source_engine, archive_engine):
    make_orders(source_engine, old_dates(9), name="orders")
    add_policy(app, "orders", batch_size=4)
    result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 0, result.output
    assert "orders: succeeded: archived 9 rows in" in result.output
    assert "rows/s" in result.output
    assert "total: archived 9 rows" in result.output and "1 succeeded" in result.output
    assert "batch 1" not in result.output  # no progress lines when stdout is not a terminal
    assert len(archived(archive_engine, "orders")) == 9
    (run,) = all_runs(app)
    assert run.trigger == "cli" and run.status == "succeeded"


def test_progress_lines_per_batch_on_request(app, runner, source_engine):
    make_orders(source_engine, old_dates(9))
    add_policy(app, "orders", batch_size=4)
    result = runner.invoke(args=["archive-now", "--progress"])
    assert result.exit_code == 0, result.output
    assert "orders: 9 rows to archive" in result.output
    lines = [line for line in result.output.splitlines() if ": batch " in line]
    assert len(lines) == 3 and lines[0].startswith("orders: batch 1: 4 rows (4 of 9 archived, 44%, ")
    assert "rows/s, ETA " in lines[0] and lines[2].startswith("orders: batch 3: 1 rows (9 of 9 archived, 100%")


def test_dry_run_moves_nothing(app, runner, source_engine, archive_engine):
    make_orders(source_engine, old_dates(5))
    add_policy(app, "orders")
    result = runner.invoke(args=["archive-now", "--dry-run", "--table", "orders"])
    assert result.exit_code == 0, result.output
    assert "would archive 5 rows" in result.output
    assert len(source_rows(source_engine, "orders")) == 5 and archived(archive_engine, "orders") == {}
    result = runner.invoke(args=["purge-now", "--dry-run"])
    assert result.exit_code == 0 and "would purge 0 rows" in result.output


def test_exit_status_is_non_zero_when_a_table_fails(app, runner, source_engine):
    make_orders(source_engine, old_dates(3), name="orders")
    add_policy(app, "orders")
    add_policy(app, "gone")
    result = runner.invoke(args=["archive-now"])
    assert result.exit_code == 1
    assert "gone: failed" in result.output and "source table 'gone' does not exist" in result.output
    assert "orders: succeeded: archived 3 rows" in result.output
    assert "1 succeeded, 1 failed" in result.output


def test_unknown_table_is_a_usage_error(app, runner):
    result = runner.invoke(args=["archive-now", "--table", "nope"])
    assert result.exit_code == 2
    assert "no policy for table 'nope'" in result.output
    assert runner.invoke(args=["purge-now", "--table", "nope"]).exit_code == 2


def test_purge_now(app, runner, source_engine, archive_engine):
    make_orders(source_engine, old_dates(4))
    add_policy(app, "orders", archive_after_days=0, delete_after_days=1)
    assert runner.invoke(args=["archive-now"]).exit_code == 0
    result = runner.invoke(args=["purge-now", "--table", "orders"])
    assert result.exit_code == 0, result.output
    assert "orders: succeeded: purged 0 rows" in result.output  # archived just now: retention not over


def test_stop_flag_is_set_by_sigterm_and_restores_handlers():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    before = signal.getsignal(signal.SIGTERM)
    flag = StopFlag()
    flag.install()
    try:
        assert flag() is False
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag() is True
        # After the first signal the previous handler is back, so a second one acts as usual.
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        flag.restore()
    assert signal.getsignal(signal.SIGTERM) is before
