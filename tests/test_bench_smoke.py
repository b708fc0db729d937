"""Smoke tests of the benchmark harness (the ``bench`` package) at small N.

SQLite always; PostgreSQL and MariaDB when their servers answer (BENCH_PG_URL,
BENCH_MARIADB_URL; under CI=true a server that does not answer fails the test). The bench
uses its own databases (bench_<pid>_* on the servers, files under tmp_path), never the suite's.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bench import ROOT, cli, datasets, limits, project
from bench.reads import parse_wrk
from bench.report import limit_table, ratio, ratio_table, reference_for
from bench.servers import query
from tests.app_support import CI

N = 2000  # 1,850 events older than 30 days; 500 orders (441 old) with 1,500 items


def make_run(tmp_path, *args: str) -> cli.Run:
    return cli.Run(cli.parse_args(["--rows", str(N), *args]), tmp_path)


def require(run: cli.Run, key: str):
    """The backend, if its server answers: else skip (locally) or fail (CI=true)."""
    backend = run.backend(key)
    if key == "sqlite":
        return backend
    url = run.args.pg_url if key == "pg" else run.args.mariadb_url
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        message = f"{key} server at {url} does not answer: {type(exc).__name__}"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return backend


def unavailable_tool(message: str) -> None:
    """Skip a test whose external tool is missing — or, under CI=true (.ci/run installs it), fail it."""
    if CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def bench_run(tmp_path):
    run = make_run(tmp_path)
    yield run
    run.close()


# --- the data sets -----------------------------------------------------------------

def test_events_data_set_is_deterministic_and_the_cutoff_selects_the_expected_rows(bench_run):
    anchor = datasets.make_anchor()
    b = bench_run.backend("sqlite")
    b.build(datasets.EVENTS, N, anchor)
    con = sqlite3.connect(b.template(datasets.EVENTS))
    try:
        assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == N
        cutoff = datasets.cutoff_for(anchor)
        counts = {hours: con.execute("SELECT COUNT(*) FROM events WHERE created_at < ?",
                                     ((cutoff + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S"),)).fetchone()[0]
                  for hours in (-2, 0, 2)}
        row = con.execute("SELECT id, user_id, kind, amount, note FROM events WHERE id = 7").fetchone()
    finally:
        con.close()
    # Two hours either side of the cutoff select the same rows.
    assert set(counts.values()) == {datasets.EVENTS.expected(N)["events"]} == {1850}
    assert row == (7, 7, "refund", 0.07, datasets.note_for(7))


def test_orders_data_set_has_three_items_per_order_and_a_cascading_key(bench_run):
    anchor = datasets.make_anchor()
    b = bench_run.backend("sqlite")
    b.build(datasets.ORDERS, N, anchor)
    con = sqlite3.connect(b.template(datasets.ORDERS))
    try:
        assert con.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == N // 4 == 500
        per_order = con.execute("SELECT MIN(c), MAX(c), COUNT(*) FROM (SELECT order_id, COUNT(*) AS c "
                                "FROM order_items GROUP BY order_id)").fetchone()
        fks = con.execute("PRAGMA foreign_key_list(order_items)").fetchall()
        indexes = [r[1] for r in con.execute("PRAGMA index_list(order_items)")]
        cutoff = datasets.cutoff_for(anchor).strftime("%Y-%m-%d %H:%M:%S")
        old_orders = con.execute("SELECT COUNT(*) FROM orders WHERE created_at < ?", (cutoff,)).fetchone()[0]
        old_items = con.execute("SELECT COUNT(*) FROM order_items i JOIN orders o ON o.id = i.order_id "
                                "WHERE o.created_at < ?", (cutoff,)).fetchone()[0]
    finally:
        con.close()
    assert per_order == (3, 3, 500)
    assert [(f[2], f[3], f[4], f[6]) for f in fks] == [("orders", "order_id", "id", "CASCADE")]
    assert "ix_order_items_order_id" in indexes
    assert datasets.ORDERS.expected(N) == {"orders": old_orders, "order_items": old_items} == \
        {"orders": 441, "order_items": 1323}


# --- the references -----------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["events", "orders"])
@pytest.mark.parametrize("key", ["sqlite", "pg", "mariadb"])
def test_reference_pipeline_moves_exactly_the_expected_rows(bench_run, key, dataset):
    b = require(bench_run, key)
    if key == "mariadb" and shutil.which("pt-archiver") is None:
        unavailable_tool("pt-archiver is not installed (apt-get install percona-toolkit)")
    ds = datasets.DATASETS[dataset]
    anchor = datasets.make_anchor()
    b.build(ds, N, anchor)
    try:
        result = cli.reference(bench_run, b, ds, N, anchor)
    finally:
        b.drop(ds)
    assert result.note == ""         # the ground-truth check found every row where it belongs
    assert result.rows == sum(ds.expected(N).values())
    assert result.seconds and result.seconds > 0


@pytest.mark.parametrize("dataset", ["events", "orders"])
def test_mariadb_limit_moves_exactly_the_expected_rows_into_archived_rows(bench_run, dataset):
    """MariaDB's second reference: the server's own INSERT … SELECT into archived_rows, then the DELETEs."""
    b = require(bench_run, "mariadb")
    ds = datasets.DATASETS[dataset]
    anchor = datasets.make_anchor()
    b.build(ds, N, anchor)
    try:
        result = cli.mariadb_limit(bench_run, b, ds, N, anchor)
        archived = b.execute(f"SELECT table_name, COUNT(*) FROM `{b.name('arch')}`.archived_rows GROUP BY table_name")
        left = {t.name: b.execute(f"SELECT COUNT(*) FROM `{b.name('src')}`.{t.name}")[0][0] for t in ds.tables}
    finally:
        b.drop(ds)
    assert (result.kind, result.note) == ("limit", "")
    assert result.rows == sum(ds.expected(N).values())
    assert dict(archived) == ds.expected(N)
    assert left == {name: size - ds.expected(N)[name] for name, size in ds.sizes(N).items()}
    assert result.seconds and result.seconds > 0


def test_startup_times_whole_archive_now_processes_on_an_empty_table(bench_run):
    from bench import startup
    lines = startup.run(bench_run, runs=2)
    assert len(lines) == 3, lines  # a header, its rule and one row (not "failed: …")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    each = [float(x) for x in cells[1].split(", ")]
    assert cells[0] == "2" and len(each) == 2 and all(0 < s < 60 for s in each)
    assert float(cells[2]) == pytest.approx(sum(each) / 2, abs=0.001)  # the median of two
    assert all(len(x.split(".")[1]) == 3 for x in cells[1].split(", "))  # milliseconds: 0.4996 is not "0.50"
    assert cells[5].startswith(("met", "NOT met"))


def test_the_check_reports_lost_children_and_young_rows_gone(bench_run):
    """The relational check on real data: a move that lost the items (the cascade) is a MISMATCH note."""
    b = bench_run.backend("sqlite")
    ds = datasets.ORDERS
    anchor = datasets.make_anchor()
    b.build(ds, N, anchor)
    pair = b.fresh(ds)
    limits.create_archive_schema(pair.archive_url)
    limits.sqlite_attach(ds, pair.source_name, pair.archive_name, datasets.cutoff_for(anchor), anchor)
    assert datasets.check(ds, N, "sqlite", pair.source_url, pair.archive_url).ok
    # As if the items of the archived orders had gone with the cascade, and a young order was deleted.
    for path, sql in ((pair.archive_name, "DELETE FROM archived_rows WHERE table_name = 'order_items'"),
                      (pair.source_name, "DELETE FROM orders WHERE id = 1")):  # 1 % 400 < 30: a young order
        con = sqlite3.connect(path)
        con.execute("PRAGMA foreign_keys = ON")
        con.execute(sql)
        con.commit()
        con.close()
    chk = datasets.check(ds, N, "sqlite", pair.source_url, pair.archive_url)
    assert chk.note.startswith("MISMATCH: ")
    assert "1,323 order_items rows lost (in neither the source nor the archive)" in chk.note
    assert "archived order_items 0 ≠ 3 × 441 archived orders" in chk.note
    assert "1 young orders rows gone from the source" in chk.note
    assert "3 young order_items rows gone from the source" in chk.note
    assert chk.moved == 441


# --- the project as a user runs it -----------------------------------------------------

def assert_user_view_row(results, key: str) -> None:
    project_rows = [r for r in results if r.kind == "project"]
    assert project_rows, results
    for row in project_rows:
        assert row.note == "", row.note  # ran, exit 0, run record and ground truth agree
        assert row.rows == datasets.EVENTS.expected(N)["events"]
        # the policy's defaults (only three fields were posted): adaptive batches, no ceiling of its own
        assert row.extra["batch_mode"] == "adaptive" and row.extra["batch_size"] is None
        assert row.extra["run"]["status"] == "succeeded"
        assert row.extra["run"]["rows_deleted"] == row.rows
        assert row.seconds > 0.3  # a whole process: interpreter and app start-up included
        assert row.peak_kb and row.peak_kb > 20_000
        ref = reference_for(results, row)
        assert ref is not None and ref.note == ""
        assert ratio(row, ref) == pytest.approx(ref.seconds / row.seconds)
    table = "\n".join(ratio_table(results))
    assert table.count(" | events | flask archive-now, default policy") == len(project_rows)
    assert "| — |" not in table.split("\n", 2)[2]  # every ratio cell is filled


@pytest.mark.slow
def test_user_view_on_sqlite_through_main(tmp_path, capsys):
    assert importlib.util.find_spec("archiver.engine.archive") is not None, "the archival engine is missing"
    out, js = tmp_path / "out.md", tmp_path / "out.json"
    code = cli.main(["--rows", str(N), "--backends", "sqlite", "--datasets", "events",
                     "--out", str(out), "--json", str(js)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    results = [cli.Result(**r) for r in json.loads(js.read_text())["results"]]
    assert [(r.kind, r.dataset) for r in results] == [("reference", "events"), ("project", "events"),
                                                     ("project", "events")]
    assert [r.label for r in results if r.kind == "project"] == [
        "flask archive-now, default policy", "flask archive-now, default policy, IN_SERVER_MOVES=false"]
    assert_user_view_row(results, "sqlite")
    assert "What a user gets (default policy, whole process)" in printed and "SQLite → SQLite | events" in printed
    assert printed.strip() in out.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["pg", "mariadb"])
def test_user_view_on_servers(bench_run, key):
    b = require(bench_run, key)
    if key == "mariadb" and shutil.which("pt-archiver") is None:
        unavailable_tool("pt-archiver is not installed (apt-get install percona-toolkit)")
    results = cli.bench_dataset(bench_run, key, datasets.EVENTS, N)
    assert [r.label for r in results if r.kind == "project"] == (
        ["flask archive-now, default policy"] if key == "pg" else
        ["flask archive-now, default policy", "flask archive-now, default policy, IN_SERVER_MOVES=false"])
    assert_user_view_row(results, b.key)
    assert [r.kind for r in results if r.kind in ("reference", "limit")] == (
        ["reference"] if key == "pg" else ["reference", "limit"])
    if key == "mariadb":  # each project row next to the server's own pipeline, with a ratio
        rows = limit_table(results)[2:]
        assert len(rows) == 2 and all(row.endswith("× |") for row in rows), rows


@pytest.mark.slow
def test_user_view_on_orders_reports_what_moved_without_crashing(bench_run):
    """Items move with their orders, inside SQLite (the default) and through the service."""
    results = cli.bench_dataset(bench_run, "sqlite", datasets.ORDERS, N, baselines=False)
    assert [r.label for r in results] == [
        "flask archive-now, default policy", "flask archive-now, default policy, IN_SERVER_MOVES=false"]
    for row in results:
        assert row.seconds and row.seconds > 0 and row.extra["run"] is not None
        counts = row.extra["counts"]
        assert row.note == "", row.note
        assert counts["orders"]["archived"] == 441
        assert counts["order_items"]["archived"] == 3 * 441 and row.rows == 4 * 441


# --- pieces --------------------------------------------------------------------------------

def test_warm_worker_reports_a_failure_as_json(tmp_path):
    settings = project.Settings(f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'arch.db'}")
    child = project.warm_job(settings, "nope", tmp_path / "result.json")
    result = json.loads((tmp_path / "result.json").read_text())
    assert child.returncode == 1
    assert result["ok"] is False and result["error"] and result["peak_kb"] > 0


def test_every_option_parses():
    args = cli.parse_args(["--rows", "5000", "--backends", "pg,sqlite", "--datasets", "orders", "--skip-baselines",
                           "--warm", "--batch-size", "5000", "--reads", "--purge", "--rss-check", "--startup",
                           "--profile", "p", "--out", "o.md", "--json", "o.json", "--keep"])
    assert (args.backend_list, args.dataset_list, args.batch_size) == (["pg", "sqlite"], ["orders"], 5000)
    assert args.startup and args.rss_check
    assert cli.parse_args(["--reads-only"]).backend_list == []
    only = cli.parse_args(["--startup-only"])
    assert only.startup and only.backend_list == []
    with pytest.raises(SystemExit):
        cli.parse_args(["--datasets", "nope"])


def test_python_dash_m_bench_runs_from_the_project_root():
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--datasets" in done.stdout


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


def test_query_helper_reads_sqlite(tmp_path):
    path = tmp_path / "x.db"
    sqlite3.connect(path).executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2);")
    assert query(f"sqlite:///{path}", "SELECT SUM(a) FROM t") == [(3,)]
