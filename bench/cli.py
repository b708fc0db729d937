"""Archival benchmark: the project as a user runs it, against each database's own limit and pt-archiver.

    scripts/bench.sh [--rows N] [--backends pg,sqlite,mariadb] [--datasets events,orders]
                     [--skip-baselines] [--warm] [--reads] [--reads-only] [--purge] [--rss-check]
                     [--startup] [--startup-only] [--profile DIR] [--out FILE] [--json FILE]

For each backend and data set (``events``; ``orders`` + ``order_items``, see
bench/datasets.py) it builds N rows once, gives every measured pipeline a fresh copy,
and moves the rows older than 30 days:

  project    a policy made with POST /config (table_name, archive_after_days=30,
             delete_after_days; every other field its default), then the whole process
             `flask --app archiver archive-now --table <root table>`, wall clock, start-up
             included. On MariaDB and SQLite twice: by default and with IN_SERVER_MOVES=false.
  reference  pg: row_to_json + COPY out/in + DELETE; sqlite: ATTACH + INSERT…SELECT
             json_object + DELETE; mariadb: pt-archiver --bulk-insert --bulk-delete
             --limit 1000 --commit-each (see bench/limits.py)
  limit      mariadb only, a second reference: INSERT…SELECT JSON_OBJECT into archived_rows
             + DELETE, one transaction (the server's own pipeline into the project's schema)

and prints the ratio table against the references (and, on MariaDB, a second one against
its limit). Every pipeline's result is checked row by row afterwards
(bench/datasets.py: check); a difference is reported in the note column.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import ROOT, datasets, limits, project
from .datasets import DATASETS, Dataset
from .report import Result, limit_table, ratio_table, reference_table, warm_table
from .servers import LABELS, Backend, MariaDb, Pair, Postgres, Sqlite

BACKENDS = ("pg", "sqlite", "mariadb")
WARM_BATCH = 10_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One benchmark run: options, its work directory and bench databases, and its results."""

    args: argparse.Namespace
    workdir: Path
    # Database names carry the run's pid, so two runs on one server never touch each other's data.
    tag: str = field(default_factory=lambda: str(os.getpid()))
    results: list[Result] = field(default_factory=list)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    _backends: dict[str, Backend] = field(default_factory=dict)

    def backend(self, key: str) -> Backend:
        if key not in self._backends:
            if key == "pg":
                self._backends[key] = Postgres(self.args.pg_url, self.tag)
            elif key == "mariadb":
                self._backends[key] = MariaDb(self.args.mariadb_url, self.tag)
            else:
                self._backends[key] = Sqlite(self.workdir)
        return self._backends[key]

    def close(self) -> None:
        for b in self._backends.values():
            b.close()


# --- the pipelines -------------------------------------------------------------------

def reference(run: Run, b: Backend, ds: Dataset, n: int, anchor: datetime) -> Result:
    """The backend's reference pipeline on a fresh copy, checked."""
    cutoff = datasets.cutoff_for(anchor)
    pair = b.fresh(ds)
    archive_table = None
    if isinstance(b, Postgres):
        label = "limit: row_to_json + COPY out/in + DELETE"
        limits.create_archive_schema(pair.archive_url)
        b.before_measure()
        timed = limits.pg_copy(ds, b.dsn_for(pair.source_name), b.dsn_for(pair.archive_name), cutoff, anchor)
    elif isinstance(b, Sqlite):
        label = "limit: ATTACH + INSERT…SELECT json_object + DELETE"
        limits.create_archive_schema(pair.archive_url)
        timed = limits.sqlite_attach(ds, pair.source_name, pair.archive_name, cutoff, anchor)
    else:
        label = limits.PT_LABEL + (" (one run per table, children first)" if len(ds.tables) > 1 else "")
        timed = limits.pt_archiver(ds, b, pair.source_name, pair.archive_name, cutoff)
        archive_table = lambda table: (pair.archive_url, table, "id")  # noqa: E731 - typed copies
    return checked(b, ds, n, "reference", label, pair, timed, archive_table)


def mariadb_limit(run: Run, b: MariaDb, ds: Dataset, n: int, anchor: datetime) -> Result:
    """MariaDB's second reference, the server's own pipeline into archived_rows (limits.py), checked."""
    cutoff = datasets.cutoff_for(anchor)
    pair = b.fresh(ds)
    limits.create_archive_schema(pair.archive_url)
    b.before_measure()
    timed = limits.mariadb_insert_select(ds, b, pair.source_name, pair.archive_name, cutoff, anchor)
    return checked(b, ds, n, "limit", limits.MARIADB_LIMIT_LABEL, pair, timed)


def checked(b: Backend, ds: Dataset, n: int, kind: str, label: str, pair: Pair, timed: limits.Timed,
            archive_table: Callable[[str], tuple[str, str, str]] | None = None) -> Result:
    """A reference pipeline's result: its failure note, or its time with the ground-truth check of
    where every row is now (``archive_table``: where a table's archived rows are, when not in
    archived_rows)."""
    result = Result(b.key, ds.name, kind, label, n)
    if timed.note:
        result.note = timed.note
        log(f"{b.key} {ds.name} {kind}: {timed.note}")
        return result
    chk = datasets.check(ds, n, b.dialect, pair.source_url, pair.archive_url, archive_table)
    result.rows, result.seconds, result.peak_kb, result.note = chk.moved, timed.seconds, timed.peak_kb, chk.note
    log(f"{b.key} {ds.name} {kind}: {chk.moved:,} rows in {timed.seconds:.2f}s" + (f" — {chk.note}" if chk.note else ""))
    return result


def run_record_note(ds: Dataset, n: int, record: project.RunRecord | None, chk: datasets.Check) -> str:
    """What the run record says that does not fit the ground truth ("" if it fits)."""
    if record is None:
        return "no run record in archive_runs"
    if record.status != "succeeded":
        return f"run {record.status}" + (f": {record.error}" if record.error else "")
    root = chk.counts.get(ds.root.name, {}).get("archived")
    if record.rows_deleted not in (chk.moved, root):
        return f"the run record says {record.rows_deleted:,} rows deleted, {chk.moved:,} archived"
    return ""


def user_view(run: Run, b: Backend, ds: Dataset, n: int, extra: dict[str, Any] | None = None) -> Result:
    """The project as a user runs it (bench/project.py) on a fresh copy, checked."""
    pair = b.fresh(ds)
    settings = project.Settings(pair.source_url, pair.archive_url, extra=dict(extra or {}))
    label = "flask archive-now, default policy" + describe(extra or {})
    result = Result(b.key, ds.name, "project", label, n)
    try:
        policy = project.setup(settings, ds.root.name)["policy"]
    except Exception as exc:  # noqa: BLE001 - reported in the table
        result.note = f"failed: set-up: {type(exc).__name__}: {str(exc)[:300]}"
        log(f"{b.key} {ds.name} project: {result.note}")
        return result
    result.extra["batch_size"] = policy.get("batch_size")
    result.extra["batch_mode"] = policy.get("batch_mode")
    b.before_measure()
    child = project.run_job(settings, "archive", ds.root.name)
    record = project.last_run(pair.archive_url, "archive", ds.root.name)
    chk = datasets.check(ds, n, b.dialect, pair.source_url, pair.archive_url)
    notes = []
    if child.returncode != 0:
        notes.append(f"failed: exit status {child.returncode}: "
                     + ((record.error if record and record.error else None) or child.tail()))
    notes += [x for x in (chk.note, run_record_note(ds, n, record, chk)) if x and x not in " ".join(notes)]
    result.rows, result.seconds, result.peak_kb = chk.moved, child.seconds, child.peak_kb
    result.note = "; ".join(notes)
    result.extra.update(counts=chk.counts, run=record.__dict__ if record else None)
    log(f"{b.key} {ds.name} {label}: {chk.moved:,} rows in "
        f"{child.seconds:.2f}s (whole process), peak {child.peak_kb / 1024:.0f} MB, "
        f"batch_mode {policy.get('batch_mode')}, batch_size {policy.get('batch_size')}"
        + (f" — {result.note}" if result.note else ""))
    return result


def warm(run: Run, b: Backend, ds: Dataset, n: int, extra: dict[str, Any] | None = None,
         profile: str = "") -> Result:
    """The job in a warm process with policy batch_size --batch-size (the older method), checked."""
    pair = b.fresh(ds)
    settings = project.Settings(pair.source_url, pair.archive_url, extra=dict(extra or {}))
    batch = run.args.batch_size or WARM_BATCH
    label = (f"job only, default policy" if profile else f"job only, batch_size {batch:,}") + describe(extra or {})
    result = Result(b.key, ds.name, "warm", label, n)
    try:
        project.setup(settings, ds.root.name, policy={} if profile else {"batch_size": batch})
    except Exception as exc:  # noqa: BLE001
        result.note = f"failed: set-up: {type(exc).__name__}: {str(exc)[:300]}"
        return result
    b.before_measure()
    out = run.workdir / f"warm-{b.key}-{ds.name}.json"
    child = project.warm_job(settings, ds.root.name, out, profile=profile)
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {"ok": False, "error": child.tail()}
    if not data.get("ok"):
        result.note = f"failed: {data.get('error') or [o.get('error') for o in data.get('outcomes', [])]}"[:400]
    chk = datasets.check(ds, n, b.dialect, pair.source_url, pair.archive_url)
    outcome = (data.get("outcomes") or [{}])[0]
    path = ("in-server move" if outcome.get("in_server") else "batches pipelined" if outcome.get("pipelined")
            else "batches one by one")
    if outcome.get("redone"):
        path += f" ({outcome['redone']} redone alone)"
    result.rows, result.seconds, result.peak_kb = chk.moved, data.get("seconds"), data.get("peak_kb")
    result.note = "; ".join(x for x in (result.note, chk.note) if x)
    result.extra.update(path=path, startup_seconds=data.get("startup_seconds"))
    log(f"{b.key} {ds.name} warm{' (profiled)' if profile else ''}: {chk.moved:,} rows in "
        f"{(data.get('seconds') or 0):.2f}s, {path}" + (f" — {result.note}" if result.note else ""))
    return result


def variants(b: Backend) -> list[dict[str, Any]]:
    """Settings of the project rows of a backend: MariaDB and SQLite run by default and with
    IN_SERVER_MOVES=false.

    Source and archive are databases of one MariaDB server, or two SQLite files, there: by default
    the rows may move inside the database (engine/backends/mysql/in_server.py,
    engine/backends/sqlite/in_server.py); with IN_SERVER_MOVES=false they go through the service,
    as they must when the archive is on another server (or SQLite's source is not a local file).
    """
    return [{}, {"IN_SERVER_MOVES": False}] if b.key in ("mariadb", "sqlite") else [{}]


def describe(extra: dict[str, Any]) -> str:
    """Settings as a label suffix."""
    return "".join(f", {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items())


def bench_dataset(run: Run, key: str, ds: Dataset, n: int, baselines: bool = True, user: bool = True,
                  warm_rows: bool = False, profile_dir: str = "") -> list[Result]:
    """Every pipeline of one backend on one data set of ``n`` rows."""
    b = run.backend(key)
    anchor = datasets.make_anchor()
    log(f"{key}: building {ds.name} ({n:,} rows)")
    t0 = time.perf_counter()
    out: list[Result] = []
    try:
        b.build(ds, n, anchor)
        log(f"{key}: built in {time.perf_counter() - t0:.1f}s")
        if baselines:
            out.append(reference(run, b, ds, n, anchor))
            if isinstance(b, MariaDb):
                out.append(mariadb_limit(run, b, ds, n, anchor))
        for extra in variants(b):
            if user:
                out.append(user_view(run, b, ds, n, extra))
            if warm_rows:
                out.append(warm(run, b, ds, n, extra))
            if profile_dir:
                suffix = describe(extra).replace(", ", "-").replace("=", "-").lower()
                path = str(Path(profile_dir).resolve() / f"profile-{key}-{ds.name}-{n}{suffix}.txt")
                warm(run, b, ds, n, extra, profile=path)
                log(f"{key} {ds.name}: profile in {path}")
    finally:
        if not run.args.keep:
            b.drop(ds)
    return out


# --- peak RSS at N and 3N --------------------------------------------------------------

def rss_check(run: Run, n: int) -> list[str]:
    """Peak RSS of the project's process (the user view, events) at N and 3N."""
    lines = ["| backend | project | rows/s at N | peak MB at N | rows/s at 3N | peak MB at 3N | growth |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for key in run.args.backend_list:
        at_n = [r for r in run.results if r.backend == key and r.kind == "project" and r.dataset == "events" and r.n == n]
        if not at_n:
            at_n = bench_dataset(run, key, datasets.EVENTS, n, baselines=False)
        at_3n = bench_dataset(run, key, datasets.EVENTS, 3 * n, baselines=False)
        for small, large in zip(at_n, at_3n):
            if small.peak_kb and large.peak_kb and small.rate and large.rate:
                lines.append(f"| {LABELS[key]} | {small.label} | {small.rate:,.0f} | {small.peak_kb / 1024:.0f} "
                             f"| {large.rate:,.0f} | {large.peak_kb / 1024:.0f} "
                             f"| {(large.peak_kb / small.peak_kb - 1) * 100:+.1f}% |")
            else:
                lines.append(f"| {LABELS[key]} | {small.label} | {small.note or '—'} | | {large.note or '—'} | | |")
    return lines


# --- environment description -----------------------------------------------------------

def machine() -> str:
    cpu, mem_gb = "unknown CPU", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {mem_gb:.0f} GB RAM, {platform.system()} {platform.release()}"


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def versions(run: Run) -> str:
    import sqlite3

    import sqlalchemy
    parts = [f"Python {platform.python_version()}", f"SQLAlchemy {sqlalchemy.__version__}"]
    commit = _git("rev-parse", "--short", "HEAD")
    if commit is None:
        parts.insert(0, "archiver (not a git checkout)")
    else:
        dirty = _git("status", "--porcelain", "--", "archiver")
        parts.insert(0, f"archiver {commit}" + (" with uncommitted changes in archiver/" if dirty else ""))
    backends = run.args.backend_list
    if "pg" in backends or run.args.reads or run.args.purge:
        try:
            parts.append(f"PostgreSQL {run.backend('pg').version()}")  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            parts.append(f"PostgreSQL unreachable ({type(exc).__name__})")
    if "mariadb" in backends:
        try:
            parts.append(f"MariaDB {run.backend('mariadb').variable('version')}")  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            parts.append(f"MariaDB unreachable ({type(exc).__name__})")
        pt = _first_line(["pt-archiver", "--version"])
        if pt:
            parts.append(pt)
    if "sqlite" in backends:
        parts.append(f"SQLite {sqlite3.sqlite_version}")
    if run.args.reads:
        wrk = _first_line(["wrk", "-v"])
        if wrk:
            parts.append(" ".join(wrk.split()[:2]))
    return ", ".join(parts)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- main --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows per data set, all tables (default 1,000,000)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma list of pg, sqlite, mariadb")
    p.add_argument("--datasets", default="events,orders",
                   help="comma list of events, orders (orders + order_items, 3 items per order)")
    p.add_argument("--skip-baselines", action="store_true", help="only the project's pipelines (no references)")
    p.add_argument("--warm", action="store_true",
                   help="also the older method, as a second table: the job alone in a warm process, "
                        f"policy batch_size --batch-size (default {WARM_BATCH:,})")
    p.add_argument("--batch-size", type=int, default=0,
                   help=f"policy batch_size of the --warm table (default {WARM_BATCH:,}); the headline always "
                        "uses the policy default")
    p.add_argument("--reads", action="store_true", help="GET /archives/events via waitress + wrk (PostgreSQL)")
    p.add_argument("--reads-only", action="store_true",
                   help="only the read benchmark: --reads with no archive pipelines (--backends ignored)")
    p.add_argument("--purge", action="store_true", help="flask purge-now over N archived rows (PostgreSQL)")
    p.add_argument("--rss-check", action="store_true", help="the project's process at N and 3N events: peak RSS")
    p.add_argument("--startup", action="store_true",
                   help="flask archive-now on an empty SQLite table, 7 whole processes: each wall time and the median")
    p.add_argument("--startup-only", action="store_true",
                   help="only the start-up measurement (--startup with no archive pipelines; --backends ignored)")
    p.add_argument("--profile", metavar="DIR",
                   help="also run each project job once more in a warm process under cProfile (default policy; "
                        "start-up and job) and write the summaries into DIR; not in the tables")
    p.add_argument("--out", help="append the results as markdown to this file")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="write every result row as JSON to this file")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="a PostgreSQL server URL whose user may create databases (env BENCH_PG_URL)")
    p.add_argument("--mariadb-url", default=os.environ.get("BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
                   help="a MariaDB server URL whose user may create databases (env BENCH_MARIADB_URL)")
    p.add_argument("--wrk-seconds", type=int, default=15, help="duration of each wrk run (default 15)")
    p.add_argument("--keep", action="store_true", help="keep the bench_* databases and files (for inspection)")
    args = p.parse_args(argv)
    args.backend_list = [x.strip() for x in args.backends.split(",") if x.strip()]
    args.dataset_list = [x.strip() for x in args.datasets.split(",") if x.strip()]
    if args.reads_only:
        args.reads, args.backend_list = True, []
    if args.startup_only:
        args.startup, args.backend_list = True, []
    unknown = set(args.backend_list) - set(BACKENDS)
    if unknown:
        p.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    unknown = set(args.dataset_list) - set(DATASETS)
    if unknown:
        p.error(f"unknown data set(s): {', '.join(sorted(unknown))}")
    minimum = 1600 if "orders" in args.dataset_list else 400
    if args.rows < minimum:
        p.error(f"--rows must be at least {minimum} (one root row per day of the 400-day spread; "
                "orders: N/4 orders)")
    return args


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


METHOD = ("project s: the whole `flask --app archiver archive-now --table <table>` process (a fresh process, "
          "interpreter and app start-up included, wall clock) over a policy made with POST /config from "
          "table_name, archive_after_days=30 and delete_after_days only (every other field its default). "
          "reference s: the pipeline itself for the PostgreSQL and SQLite limits (connections open beforehand); "
          "pt-archiver's whole process(es). ratio: reference s / project s for the same rows (> 1: the project "
          "is faster), shown only when both moved exactly the expected rows (checked in the databases "
          "afterwards: every row in the source or archived exactly once). peak MB: the project process's peak "
          "RSS (VmHWM, sampled every 20 ms).")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project.check_instance_config()
    # SIGTERM (and SIGINT, which a background shell job ignores otherwise) end the run through
    # the finally blocks: the current child is stopped and the bench databases are dropped.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    workdir = Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    run = Run(args, workdir)
    started = datetime.now(timezone.utc)
    load_before = loadavg()
    n = args.rows
    log(f"N = {n:,}; backends {', '.join(args.backend_list) or '—'}; data sets {', '.join(args.dataset_list)}; "
        f"work dir {workdir}")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    try:
        for key in args.backend_list:
            for name in args.dataset_list:
                try:
                    run.results += bench_dataset(run, key, DATASETS[name], n, baselines=not args.skip_baselines,
                                                 warm_rows=args.warm, profile_dir=args.profile or "")
                except Exception as exc:  # noqa: BLE001 - e.g. a server is down: say so, go on
                    log(f"{key} {name}: {type(exc).__name__}: {exc}")
                    run.results.append(Result(key, name, "project", "flask archive-now, default policy", n,
                                              note=f"failed: {type(exc).__name__}: {str(exc)[:200]}"))
        if args.reads or args.purge:
            from . import reads
            run.sections += reads.run(run, n, reads=args.reads, purge=args.purge)
        if args.rss_check:
            run.sections.append(("Peak RSS of the project's process (events, the user view) at N and 3N",
                                 rss_check(run, n)))
        if args.startup:
            from . import startup
            run.sections.append((f"Start-up: flask --app archiver archive-now --table events on an empty SQLite "
                                 f"table, default policy, {startup.RUNS} whole processes one after another",
                                 startup.run(run)))
        versions_text = versions(run)
    finally:
        run.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = ["", f"Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {machine()}. Load average before/after: "
                f"{load_before} / {loadavg()}.",
            f"Versions: {versions_text}."]
    if run.results:
        text.append(f"N = {n:,} rows per data set; events: {datasets.EVENTS.expected(n)['events']:,} older than "
                    f"30 days; orders: {datasets.ORDERS.sizes(n)['orders']:,} orders with 3 items each, "
                    f"{sum(datasets.ORDERS.expected(n).values()):,} rows (orders and items) older than 30 days.")
    if any(r.kind == "project" for r in run.results):
        text += ["", "What a user gets (default policy, whole process):", "", *ratio_table(run.results), "", METHOD]
    if any(r.kind in ("reference", "limit") for r in run.results):
        text += ["", "References:", "", *reference_table(run.results)]
    if any(r.kind == "limit" for r in run.results):
        text += ["", "MariaDB, the project against the server's own pipeline into archived_rows (not the targets' "
                     "reference: pt-archiver writes typed copies, without the JSON payload and archived_rows' "
                     "indexes):", "", *limit_table(run.results)]
    if any(r.kind == "warm" for r in run.results):
        text += ["", f"Older method, for comparison: the job alone in a warm process (app built first, start-up "
                     f"not timed), policy batch_size {args.batch_size or WARM_BATCH:,}:", "", *warm_table(run.results)]
    if args.profile:
        text += ["", f"Profiles (warm process, default policy, start-up and job under cProfile) in {args.profile}."]
    for title, lines in run.sections:
        text += ["", f"{title}:", "", *lines]
    print("\n".join(text))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(f"\n## Run of {started:%Y-%m-%d %H:%M} UTC, N = {n:,}\n" + "\n".join(text) + "\n")
        log(f"appended to {args.out}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump({"started": started.isoformat(), "n": n, "results": [r.as_dict() for r in run.results]},
                      fh, indent=1, default=str)
    return 1 if any(r.failed for r in run.results) else 0
