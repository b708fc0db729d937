"""Smoke test of the benchmark harness (scripts/bench*.py) at tiny N, SQLite only.

The bench uses its own databases (bench_* on PostgreSQL/MariaDB), never the
suite's, so this test stays on SQLite files under tmp_path.
"""
from __future__ import annotations

import importlib.util
import json
import sqlite3
from datetime import timedelta

import pytest

from scripts import bench, bench_data
from scripts.bench_reads import parse_wrk

N = 2000


def make_bench(tmp_path) -> bench.Bench:
    return bench.Bench(bench.parse_args(["--rows", str(N), "--backends", "sqlite"]), tmp_path)


def test_data_set_is_deterministic_and_the_cutoff_selects_the_expected_rows(tmp_path):
    anchor = bench_data.make_anchor()
    path = tmp_path / "tpl.db"
    bench_data.sqlite_build_events(path, N, anchor)
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == N
        cutoff = bench_data.cutoff_for(anchor).strftime("%Y-%m-%d %H:%M:%S")
        old = con.execute("SELECT COUNT(*) FROM events WHERE created_at < ?", (cutoff,)).fetchone()[0]
        # Two hours either side of the cutoff select the same rows.
        for hours in (-2, 2):
            shifted = (bench_data.cutoff_for(anchor) + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")
            assert con.execute("SELECT COUNT(*) FROM events WHERE created_at < ?", (shifted,)).fetchone()[0] == old
        row = con.execute("SELECT id, user_id, kind, amount, note FROM events WHERE id = 7").fetchone()
    finally:
        con.close()
    assert old == bench_data.expected_archived(N) == 1850
    assert row == (7, 7, "refund", 0.07, bench_data.note_for(7))
    assert len(row[4]) == 100


def test_sqlite_limit_pipeline_moves_exactly_the_old_rows(tmp_path):
    b = make_bench(tmp_path)
    rows = bench.bench_sqlite(b, N, baselines=True, project=False)
    assert [r.pipeline for r in rows] == ["limit"]
    limit = rows[0]
    assert limit.note == ""          # check_counts found no mismatch
    assert limit.rows == bench_data.expected_archived(N)
    assert limit.seconds and limit.seconds > 0 and limit.peak_kb and limit.peak_kb > 0


@pytest.mark.slow
def test_project_pipeline_on_sqlite_moves_exactly_the_old_rows(tmp_path):
    if importlib.util.find_spec("archiver.engine.archive") is None:
        pytest.skip("the archival engine is not there yet")
    b = make_bench(tmp_path)
    rows = bench.bench_sqlite(b, N, baselines=False, project=True)
    project = rows[0]
    if project.note.startswith("n/a"):
        pytest.skip(project.note)
    assert project.note == "", project.note
    assert project.rows == bench_data.expected_archived(N)
    assert project.peak_kb and project.peak_kb > 0
    table = "\n".join(bench.render_table(rows))
    assert "SQLite → SQLite" in table and "1,850" in table


def test_wrk_output_is_parsed():
    text = """Running 15s test @ http://127.0.0.1:5000/archives/events?limit=100
  2 threads and 8 connections
  Latency Distribution
     50%    3.05ms
     75%    4.10ms
     90%    6.00ms
     99%  850.00us
  4500 requests in 15.00s, 10.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    300.25
Transfer/sec:      1.00MB
"""
    stats = parse_wrk(text)
    assert stats["rps"] == 300.25
    assert stats["p50"] == 3.05
    assert stats["p99"] == pytest.approx(0.85)
    assert stats["non2xx"] == 3


def test_worker_reports_a_missing_step_as_json(tmp_path):
    child = bench.worker("limit-sqlite", "--src", str(tmp_path / "nope.db"), "--arch", str(tmp_path / "a.db"))
    assert child.returncode == 1
    assert child.result["ok"] is False and "error" in child.result
    json.dumps(child.result)
