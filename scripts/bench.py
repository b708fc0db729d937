"""Archival benchmark: the project against each database's own limit and pt-archiver.

    scripts/bench.sh [--rows N] [--backends pg,sqlite,mariadb] [--skip-baselines]
                     [--reads] [--purge] [--rss-check] [--out FILE]

For each backend it builds an ``events`` table of N rows spread over 400 days
(see scripts/bench_data.py), then gives every measured pipeline a fresh copy of
the same rows and moves those older than 30 days:

  pg       the project (PostgreSQL → PostgreSQL) vs. the limit: server-side
           row_to_json + COPY … TO STDOUT piped into COPY … FROM STDIN + one DELETE
  sqlite   the project (SQLite → SQLite) vs. the limit: ATTACH + INSERT … SELECT
           json_object(…) + DELETE in one engine
  mariadb  the project (MariaDB → MariaDB, PyMySQL), with its in-server move (the default when
           both databases are on one server) and with IN_SERVER_MOVES=false (rows through the
           service), vs. pt-archiver --bulk-insert --bulk-delete --limit 1000 --commit-each

The project's job runs in its own process (scripts/bench_worker.py runs the
``archive-now`` command in-process after building the app), so its peak RSS is
its own (VmHWM). ``--reads`` measures GET /archives/events through waitress
with wrk; ``--purge`` times ``purge-now`` over N archived rows on PostgreSQL.

PostgreSQL and MariaDB databases named bench_<pid>_* are created and
dropped by the run; SQLite files live in a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
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

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import bench_data as data  # noqa: E402
from scripts.bench_worker import peak_rss_kb  # noqa: E402

BACKEND_LABELS = {"pg": "PostgreSQL → PostgreSQL", "sqlite": "SQLite → SQLite", "mariadb": "MariaDB → MariaDB"}
TARGETS = {"pg": 0.7, "sqlite": 0.6, "mariadb": 1.5}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- child processes ---------------------------------------------------------

@dataclass
class ChildResult:
    returncode: int
    wall_seconds: float
    peak_kb: int
    stdout: str
    stderr: str
    result: dict[str, Any] = field(default_factory=dict)


def run_child(argv: list[str], env: dict[str, str] | None = None) -> ChildResult:
    """Run ``argv`` to completion and measure its own peak RSS.

    The peak is the process's VmHWM, sampled every 20 ms while it runs (and
    reported by the worker itself at its end). ``ru_maxrss`` from wait4 is not
    used: on Linux an exec'd child inherits the parent's high-water mark, so it
    would report at least the harness's own RSS.
    """
    peak = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT)
        try:
            while True:
                pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak = max(peak, peak_rss_kb(proc.pid) or 0)
                time.sleep(0.02)
        except BaseException:  # interrupted: do not leave the measured process running
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result: dict[str, Any] = {}
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT "):])
            break
    peak = max(peak, int(result.get("peak_kb") or 0))
    return ChildResult(proc.returncode, wall, peak, stdout, stderr, result)


def worker(*args: str, env: dict[str, str] | None = None) -> ChildResult:
    return run_child([sys.executable, "-m", "scripts.bench_worker", *args], env=env)


def child_problem(child: ChildResult) -> str | None:
    """Why a worker step failed (short), or None."""
    if child.result.get("ok"):
        return None
    if child.result.get("missing"):
        return f"n/a ({child.result['missing']})"
    text = child.result.get("error") or (child.stderr.strip().splitlines() or ["no output"])[-1]
    return f"failed: {text[:300]}"


# --- results -------------------------------------------------------------------

@dataclass
class Row:
    backend: str          # pg | sqlite | mariadb
    pipeline: str         # project | limit | pt-archiver
    label: str
    rows: int | None = None
    seconds: float | None = None
    peak_kb: int | None = None
    note: str = ""
    n: int = 0

    @property
    def rate(self) -> float | None:
        if not self.rows or not self.seconds:
            return None
        return self.rows / self.seconds


def ratio(a: Row | None, b: Row | None) -> str:
    if a is None or b is None or a.rate is None or b.rate is None:
        return "—"
    return f"{a.rate / b.rate:.2f}×"


def fmt_int(value: float | int | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def render_table(rows: list[Row]) -> list[str]:
    """The benchmark's one table, as markdown lines."""
    out = ["| backend | pipeline | rows | seconds | rows/s | peak MB | ratio to the limit | ratio to pt-archiver |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        limit = next((x for x in rows if x.backend == r.backend and x.pipeline == "limit" and x.n == r.n), None)
        pt = next((x for x in rows if x.backend == r.backend and x.pipeline == "pt-archiver" and x.n == r.n), None)
        if r.rate is None:
            cells = [BACKEND_LABELS[r.backend], r.label, r.note or "n/a", "—", "—", "—", "—", "—"]
        else:
            cells = [BACKEND_LABELS[r.backend], r.label, fmt_int(r.rows), f"{r.seconds:.2f}", fmt_int(r.rate),
                     "—" if r.peak_kb is None else f"{r.peak_kb / 1024:.0f}",
                     ratio(r, limit) if r.pipeline != "limit" else "1.00×",
                     ratio(r, pt) if r.backend == "mariadb" else "—"]
        out.append("| " + " | ".join(cells) + " |")
    return out


# --- context -------------------------------------------------------------------

@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    # Database names carry the run's pid, so two runs on one server never touch each other's data.
    tag: str = field(default_factory=lambda: str(os.getpid()))
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    _pg: data.PgAdmin | None = None
    _maria: data.MariaDbAdmin | None = None

    def db(self, role: str) -> str:
        """This run's database name for ``role`` (tpl, src, arch, …): bench_<pid>_<role>."""
        return f"bench_{self.tag}_{role}"

    @property
    def pg(self) -> data.PgAdmin:
        if self._pg is None:
            self._pg = data.PgAdmin(self.args.pg_url)
        return self._pg

    @property
    def maria(self) -> data.MariaDbAdmin:
        if self._maria is None:
            self._maria = data.MariaDbAdmin.from_url(self.args.mariadb_url)
        return self._maria

    def project_env(self, source_url: str, archive_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "ARCHIVER_ENV": "production",
            "SOURCE_DATABASE_URL": source_url,
            "ARCHIVE_DATABASE_URL": archive_url,
            "JWT_SECRET_KEY": self.secret,
            "JWT_ACCESS_TOKEN_MINUTES": "240",
            "SCHEDULER_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
        })
        return env

    def setup_project(self, env: dict[str, str], *extra: str) -> ChildResult:
        args = ["setup", "--table", data.TABLE, "--archive-after-days", str(data.ARCHIVE_AFTER_DAYS),
                "--delete-after-days", str(data.DELETE_AFTER_DAYS)]
        if self.args.batch_size:
            args += ["--batch-size", str(self.args.batch_size)]
        return worker(*args, *extra, env=env)

    def run_project(self, backend: str, n: int, env: dict[str, str], verify: Callable[[], tuple[int, int]],
                    kind: str = "archive", label: str = "project: flask archive-now",
                    in_server: bool | None = None) -> Row:
        """Set up the archive DB, run the project's job in a child, check what moved.

        ``in_server``: whether the job must (True) or must not (False) have moved the rows
        inside the server (the summary line says so); a mismatch is noted on the row.
        """
        row = Row(backend, "project", label, n=n)
        setup = self.setup_project(env)
        problem = child_problem(setup)
        if problem:
            row.note = problem
            return row
        wargs = [kind, "--table", data.TABLE]
        if self.args.profile:
            Path(self.args.profile).mkdir(parents=True, exist_ok=True)
            wargs.insert(1, f"--profile={Path(self.args.profile).resolve() / f'profile-{backend}-{kind}-{n}.txt'}")
            row.label += " (under cProfile)"
        child = worker(*wargs, env=env)
        problem = child_problem(child)
        if problem:
            row.note = problem
            log(f"{backend} project: {problem}")
            if child.stderr.strip():
                log(child.stderr.strip()[-1500:])
            return row
        archived, remaining = verify()
        row.rows, row.seconds, row.peak_kb = archived, child.result["seconds"], child.peak_kb
        row.note = check_counts(n, archived, remaining)
        output = child.result.get("output", "")
        moved_inside = "moved inside the server" in output
        if in_server is not None and moved_inside != in_server and not row.note:
            row.note = "MISMATCH: the in-server move was " + ("not used" if in_server else "used")
        if "pipelined" in output:
            row.label += " (batches pipelined)"
        redone = re.search(r"\((\d+) batch(?:es)? redone alone\)", output)
        if redone:
            row.label += f" [{redone.group(1)} batch(es) redone alone]"
        log(f"{backend} project: {archived} rows in {row.seconds:.2f}s (start-up {child.result.get('startup_seconds', 0):.2f}s "
            f"not timed), peak {child.peak_kb / 1024:.0f} MB, batch_size {setup.result.get('batch_size')}"
            + (f" — {row.note}" if row.note else ""))
        return row


def check_counts(n: int, archived: int, remaining: int) -> str:
    expected = data.expected_archived(n)
    if archived == expected and remaining == n - expected:
        return ""
    return f"MISMATCH: archived {archived} (expected {expected}), source left {remaining} (expected {n - expected})"


def run_limit(backend: str, label: str, n: int, verify: Callable[[], tuple[int, int]], *worker_args: str) -> Row:
    """Run a database's own limit pipeline (a bench_worker step) and check what moved."""
    child = worker(*worker_args)
    row = Row(backend, "limit", label, n=n)
    problem = child_problem(child)
    if problem:
        row.note = problem
        return row
    archived, remaining = verify()
    row.rows, row.seconds, row.peak_kb = archived, child.result["seconds"], child.peak_kb
    row.note = check_counts(n, archived, remaining)
    log(f"{backend} limit: {archived} rows in {row.seconds:.2f}s")
    return row


# --- PostgreSQL -------------------------------------------------------------------

def build_template(b: Bench, backend: str, admin: Any, n: int) -> tuple[str, str, str, datetime, datetime]:
    """Build the run's template ``events`` database on a server; (tpl, src, arch) names, anchor, cutoff."""
    tpl, src, arch = b.db("tpl"), b.db("src"), b.db("arch")
    anchor = data.make_anchor()
    log(f"{backend}: building {tpl} with {n:,} events")
    t0 = time.perf_counter()
    admin.build_events(tpl, n, anchor)
    log(f"{backend}: built in {time.perf_counter() - t0:.1f}s")
    return tpl, src, arch, anchor, data.cutoff_for(anchor)


def bench_pg(b: Bench, n: int, baselines: bool = True, project: bool = True) -> list[Row]:
    pg = b.pg
    tpl, src, arch, anchor, cutoff = build_template(b, "pg", pg, n)
    src_url, arch_url = pg.url_for(src), pg.url_for(arch)
    out: list[Row] = []

    def verify() -> tuple[int, int]:
        archived = data.count_rows(arch_url, "archived_rows", f"table_name = '{data.TABLE}'")
        return archived, data.count_rows(src_url, data.TABLE)

    try:
        if baselines:
            pg.create(src, template=tpl)
            pg.create(arch)
            create_archive_schema(arch_url)
            pg.checkpoint()
            out.append(run_limit("pg", "limit: row_to_json + COPY out/in + DELETE", n, verify,
                                 "limit-pg", "--src", pg.dsn_for(src), "--arch", pg.dsn_for(arch),
                                 "--cutoff", cutoff.isoformat(sep=" "), "--now", anchor.isoformat(sep=" ")))
        if project:
            pg.create(src, template=tpl)
            pg.create(arch)
            pg.checkpoint()
            out.append(b.run_project("pg", n, b.project_env(src_url, arch_url), verify))
    finally:
        if not b.args.keep:
            for name in (src, arch, tpl):
                pg.drop(name)
    return out


def create_archive_schema(url: str) -> None:
    """The project's own archived_rows table (same columns and indexes) for a limit pipeline."""
    from archiver.engine import schema
    from archiver.engine.connections import make_engine
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        schema.metadata.create_all(engine, tables=[schema.archived_rows])
    finally:
        engine.dispose()


# --- SQLite ------------------------------------------------------------------------

def bench_sqlite(b: Bench, n: int, baselines: bool = True, project: bool = True) -> list[Row]:
    anchor = data.make_anchor()
    cutoff = data.cutoff_for(anchor)
    tpl, src, arch = b.workdir / "tpl.db", b.workdir / "src.db", b.workdir / "arch.db"
    log(f"sqlite: building {tpl} with {n:,} events")
    t0 = time.perf_counter()
    data.sqlite_build_events(tpl, n, anchor)
    log(f"sqlite: built in {time.perf_counter() - t0:.1f}s")
    src_url, arch_url = f"sqlite:///{src}", f"sqlite:///{arch}"
    out: list[Row] = []

    def fresh() -> None:
        data.sqlite_copy(tpl, src)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{arch}{suffix}").unlink(missing_ok=True)

    def verify() -> tuple[int, int]:
        archived = data.count_rows(arch_url, "archived_rows", f"table_name = '{data.TABLE}'")
        return archived, data.sqlite_count(src, data.TABLE)

    try:
        if baselines:
            fresh()
            create_archive_schema(arch_url)
            out.append(run_limit("sqlite", "limit: ATTACH + INSERT…SELECT json_object + DELETE", n, verify,
                                 "limit-sqlite", "--src", str(src), "--arch", str(arch),
                                 "--cutoff", cutoff.isoformat(sep=" "), "--now", anchor.isoformat(sep=" ")))
        if project:
            fresh()
            out.append(b.run_project("sqlite", n, b.project_env(src_url, arch_url), verify))
    finally:
        for path in (tpl, src, arch):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    return out


# --- MariaDB -----------------------------------------------------------------------

def pt_archiver_dsn(b: Bench, database: str) -> str:
    url = b.maria.url
    parts = [f"D={database}", "t=events", f"u={url.username or 'root'}"]
    if url.password:
        parts.append(f"p={url.password}")
    socket = url.query.get("unix_socket")
    if socket:
        parts.append(f"S={socket}")
        parts.append("h=localhost")
    else:
        parts += [f"h={url.host or '127.0.0.1'}", f"P={url.port or 3306}"]
    return ",".join(parts)


def bench_mariadb(b: Bench, n: int, baselines: bool = True, project: bool = True) -> list[Row]:
    maria = b.maria
    tpl, src, arch, _anchor, cutoff = build_template(b, "mariadb", maria, n)
    src_url, arch_url = maria.url_for(src), maria.url_for(arch)
    out: list[Row] = []
    try:
        if baselines:
            row = Row("mariadb", "pt-archiver", "pt-archiver --bulk-insert --bulk-delete --limit 1000 --commit-each",
                      n=n)
            tool = shutil.which("pt-archiver")
            if tool is None:
                row.note = "n/a (pt-archiver not installed: apt-get install percona-toolkit)"
            else:
                maria.copy_events(tpl, src)
                maria.create(arch)
                maria.execute(f"CREATE TABLE `{arch}`.events LIKE `{tpl}`.events")
                argv = [tool, "--source", pt_archiver_dsn(b, src), "--dest", pt_archiver_dsn(b, arch),
                        "--where", f"created_at < '{cutoff.isoformat(sep=' ')}'",
                        "--limit", "1000", "--commit-each", "--bulk-insert", "--bulk-delete",
                        "--statistics", "--no-check-charset", "--no-version-check"]
                child = run_child(argv)
                if child.returncode != 0:
                    row.note = f"failed: {(child.stderr.strip() or child.stdout.strip())[-300:]}"
                else:
                    archived = maria.count(arch, "events")
                    remaining = maria.count(src, "events")
                    row.rows, row.seconds, row.peak_kb = archived, child.wall_seconds, child.peak_kb
                    row.note = check_counts(n, archived, remaining)
                    log(f"mariadb pt-archiver: {archived} rows in {row.seconds:.2f}s")
            out.append(row)
        if project:
            def verify() -> tuple[int, int]:
                archived = maria.count(arch, "archived_rows", f"table_name = '{data.TABLE}'")
                return archived, maria.count(src, "events")

            # Source and archive are databases of one server: by default the rows move inside it
            # (engine/in_server.py). With IN_SERVER_MOVES=false they go through the service, as
            # they must when the archive is on another server.
            for in_server in (True, False):
                maria.copy_events(tpl, src)
                maria.create(arch)
                env = {**b.project_env(src_url, arch_url), "IN_SERVER_MOVES": "true" if in_server else "false"}
                label = ("project: flask archive-now (in-server move)" if in_server
                         else "project: flask archive-now, IN_SERVER_MOVES=false (rows through the service)")
                out.append(b.run_project("mariadb", n, env, verify, label=label, in_server=in_server))
    finally:
        if not b.args.keep:
            for name in (src, arch, tpl):
                maria.drop(name)
    return out


RUNNERS: dict[str, Callable[..., list[Row]]] = {"pg": bench_pg, "sqlite": bench_sqlite, "mariadb": bench_mariadb}


# --- peak RSS at N and 3N -------------------------------------------------------------

def rss_check(b: Bench, backends: list[str], n: int) -> list[str]:
    """Peak RSS of each project pipeline at N and 3N (both MariaDB variants)."""
    lines = ["| backend | pipeline | rows/s at N | peak MB at N | rows/s at 3N | peak MB at 3N | growth |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for backend in backends:
        at_n = [r for r in b.rows if r.backend == backend and r.pipeline == "project" and r.n == n]
        if not at_n:
            at_n = [r for r in RUNNERS[backend](b, n, baselines=False) if r.pipeline == "project"]
        at_3n = [r for r in RUNNERS[backend](b, 3 * n, baselines=False) if r.pipeline == "project"]
        for small, large in zip(at_n, at_3n):
            label = small.label.removeprefix("project: ")
            if small.peak_kb and large.peak_kb and small.rate and large.rate:
                growth = f"{(large.peak_kb / small.peak_kb - 1) * 100:+.1f}%"
                lines.append(f"| {BACKEND_LABELS[backend]} | {label} | {fmt_int(small.rate)} | "
                             f"{small.peak_kb / 1024:.0f} | {fmt_int(large.rate)} | {large.peak_kb / 1024:.0f} | {growth} |")
            else:
                lines.append(f"| {BACKEND_LABELS[backend]} | {label} | {small.note or '—'} | | {large.note or '—'} | | |")
    return lines


# --- environment description -----------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    mem_gb = 0.0
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


def _cmd_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def _git(*args: str) -> str | None:
    """Output of a git command in the project's checkout; None if it fails (e.g. not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def versions(b: Bench, backends: list[str]) -> str:
    import sqlite3

    import sqlalchemy
    parts = [f"Python {platform.python_version()}", f"SQLAlchemy {sqlalchemy.__version__}"]
    commit = _git("rev-parse", "--short", "HEAD")
    if commit is None:
        parts.insert(0, "archiver (not a git checkout)")
    else:
        dirty = _git("status", "--porcelain", "--", "archiver")
        parts.insert(0, f"archiver {commit}" + (" with uncommitted changes in archiver/" if dirty else ""))
    if "pg" in backends or b.args.reads or b.args.purge:
        try:
            parts.append(f"PostgreSQL {b.pg.version()}")
        except Exception as exc:  # pragma: no cover - reported, not fatal
            parts.append(f"PostgreSQL unreachable ({type(exc).__name__})")
    if "mariadb" in backends:
        try:
            parts.append(f"MariaDB {b.maria.variable('version')}")
        except Exception as exc:  # pragma: no cover
            parts.append(f"MariaDB unreachable ({type(exc).__name__})")
        pt = _cmd_version(["pt-archiver", "--version"])
        if pt:
            parts.append(pt)
    if "sqlite" in backends:
        parts.append(f"SQLite {sqlite3.sqlite_version}")
    if b.args.reads:
        wrk = _cmd_version(["wrk", "-v"])
        if wrk:
            parts.append(" ".join(wrk.split()[:2]))
    return ", ".join(parts)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the events table (default 1,000,000)")
    p.add_argument("--backends", default="pg,sqlite,mariadb", help="comma list of pg, sqlite, mariadb")
    p.add_argument("--skip-baselines", action="store_true", help="only the project's pipelines")
    p.add_argument("--reads", action="store_true", help="GET /archives/events via waitress + wrk (PostgreSQL)")
    p.add_argument("--reads-only", action="store_true",
                   help="only the read benchmark: --reads with no archive pipelines (--backends ignored)")
    p.add_argument("--purge", action="store_true", help="purge-now over N archived rows (PostgreSQL)")
    p.add_argument("--rss-check", action="store_true", help="project job at N and 3N: compare peak RSS")
    p.add_argument("--out", help="append the results as markdown to this file")
    p.add_argument("--batch-size", type=int, default=0, help="policy batch_size (default: the project's default)")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="a PostgreSQL server URL whose user may create databases (env BENCH_PG_URL)")
    p.add_argument("--mariadb-url", default=os.environ.get("BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
                   help="a MariaDB server URL whose user may create databases (env BENCH_MARIADB_URL)")
    p.add_argument("--wrk-seconds", type=int, default=15, help="duration of each wrk run (default 15)")
    p.add_argument("--profile", metavar="DIR", help="cProfile the project's jobs and write summaries into DIR "
                   "(profiled timings are slower and marked as such)")
    p.add_argument("--keep", action="store_true", help="keep the bench_* databases (for inspection)")
    args = p.parse_args(argv)
    args.backend_list = [x.strip() for x in args.backends.split(",") if x.strip()]
    if args.reads_only:
        args.reads, args.backend_list = True, []
    unknown = set(args.backend_list) - set(RUNNERS)
    if unknown:
        p.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if args.rows < 400:
        p.error("--rows must be at least 400 (one row per day of the 400-day spread)")
    return args


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (and SIGINT, which a background shell job ignores otherwise) end the run through
    # the finally blocks: the current child is stopped and the bench databases are dropped.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    workdir = Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    b = Bench(args, workdir)
    started = datetime.now(timezone.utc)
    load_before = loadavg()
    n = args.rows
    log(f"N = {n:,}; backends {', '.join(args.backend_list)}; work dir {workdir}")
    try:
        for backend in args.backend_list:
            try:
                b.rows += RUNNERS[backend](b, n, baselines=not args.skip_baselines)
            except Exception as exc:
                log(f"{backend}: {type(exc).__name__}: {exc}")
                b.rows.append(Row(backend, "project", "project: flask archive-now", n=n,
                                  note=f"failed: {type(exc).__name__}: {str(exc)[:200]}"))
        if args.reads or args.purge:
            from scripts import bench_reads
            b.sections += bench_reads.run(b, n, reads=args.reads, purge=args.purge)
        if args.rss_check:
            b.sections.append(("Peak RSS of the project's job at N and 3N", rss_check(b, args.backend_list, n)))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        if b._pg is not None:
            b._pg.dispose()
    header = [f"Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {machine()}. Load average before/after: "
              f"{load_before} / {loadavg()}.",
              f"Versions: {versions(b, args.backend_list)}.",
              f"N = {n:,} events rows; {data.expected_archived(n):,} are older than 30 days "
              f"(archive_after_days=30)."]
    table = render_table(b.rows) if b.rows else []
    footnotes = ["seconds: the pipeline's own time — for the project, from the start of `archive-now` to its return "
                 "(interpreter and app start-up not included); for pt-archiver, the whole process. peak MB: the "
                 "measured process's peak RSS (the project's job process; the limit's client process, the server "
                 "does the work)."]
    if args.profile:
        footnotes.append(f"The project's job ran under cProfile (slower than normal); profiles in {args.profile}.")
    text = ["", *header, ""]
    if table:
        text += [*table, "", *footnotes]
    for title, lines in b.sections:
        text += ["", f"{title}:", "", *lines]
    print("\n".join(text))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(f"\n## Run of {started:%Y-%m-%d %H:%M} UTC, N = {n:,}\n" + "\n".join(text) + "\n")
        log(f"appended to {args.out}")
    failed = any(r.note.startswith(("failed", "MISMATCH")) for r in b.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
