"""Read and purge benchmarks on PostgreSQL (``--reads`` / ``--purge``).

Reads: N archived ``events`` rows are built server-side (generate_series → jsonb payloads)
in a bench archive database; the service runs under waitress (WAITRESS_THREADS threads,
loopback, scheduler off) and ``wrk --latency`` hits ``GET /archives/events?limit=100``
on the first page and on a page 5,000 pages deep (its cursor is minted by the app's own
cursor service, then checked over HTTP before wrk runs), **while an archive run is going on the
same archive database**: ``flask archive-now --table events`` over 4N more source rows (their ids
after the archived ones) starts before the first wrk run; each row of the table says whether the
run was still going when its wrk run ended. Each page is measured twice: with 8 connections
(``-t2 -c8``: the 2 cores saturated, so latency is mostly queueing, 8 / throughput) and with one
(``-t1 -c1``: the latency one console user sees, one request after the other).

Purge: the same rows, archived 366+ days ago under a policy with delete_after_days=365,
removed by the whole ``flask --app archiver purge-now --table events`` process (start-up
included, like archive-now); rows left are counted and the run record is read afterwards.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from . import ROOT, datasets, project
from .servers import Postgres, query

if TYPE_CHECKING:  # pragma: no cover
    from .cli import Run

PAGE = 100
DEEP_PAGES = 5000
# The service's own default (scripts/run.sh, scripts/docker-entrypoint.sh). The app is CPU-bound
# under the GIL: 4 threads serve 8 connections at the same rate as 8 threads with a lower p99.
WAITRESS_THREADS = 4

POPULATE_ARCHIVE = """
INSERT INTO archived_rows (table_name, source_pk, payload, row_date, archived_at)
SELECT 'events', g::text,
       jsonb_build_object(
         'id', g,
         'created_at', to_char(t.ts, 'YYYY-MM-DD"T"HH24:MI:SS'),
         'user_id', g % 5000,
         'kind', (ARRAY['click','view','buy','refund'])[1 + g % 4],
         'amount', ((g % 100000) / 100.0)::numeric(12,2)::text,
         'note', substr(md5(g::text) || md5((g+1)::text) || md5((g+2)::text) || md5((g+3)::text), 1, 100)),
       t.ts AT TIME ZONE 'UTC',
       TIMESTAMPTZ '{anchor}+00' - INTERVAL '366 days' - (g % 30) * INTERVAL '1 day'
FROM generate_series(1, {n}) AS g,
     LATERAL (SELECT TIMESTAMP '{anchor}' - (30 + g % 370) * INTERVAL '1 day'
                     - (7200 + g % 72000) * INTERVAL '1 second' AS ts) AS t
ORDER BY g"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, token: str, timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict[str, float | None]:
    """req/s, p50/p99 in ms and the non-2xx count from ``wrk --latency`` output (wrk has no JSON)."""
    def latency(pct: str) -> float | None:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else None
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {"rps": float(rps.group(1)) if rps else None, "p50": latency("50"), "p99": latency("99"),
            "non2xx": float(bad.group(1)) if bad else 0.0, "socket_errors": 1.0 if errors else 0.0}


#: wrk's (threads, connections) per measurement: saturating, then one client.
CLIENTS = ((2, 8), (1, 1))


def wrk(url: str, token: str, seconds: int, threads: int = 2, connections: int = 8) -> dict[str, float | None]:
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                           "-H", f"Authorization: Bearer {token}", url],
                          capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    # stderr goes to a file, not a pipe: nobody reads a pipe while wrk runs, and once it fills
    # (waitress logs "Task queue depth" whenever connections outnumber threads) the server blocks.
    errlog = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "waitress", "--host", "127.0.0.1", "--port", str(port),
                             "--threads", str(WAITRESS_THREADS), "--call", "archiver:create_app"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errlog, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            errlog.seek(0)
            raise RuntimeError(f"waitress exited: {errlog.read()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("waitress did not answer /health within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(bench: "Run", n: int, reads: bool = True, purge: bool = True) -> list[tuple[str, list[str]]]:
    """The read and/or purge benchmark over ``n`` archived rows; markdown sections."""
    from .cli import log

    pg = bench.backend("pg")
    assert isinstance(pg, Postgres)
    rsrc, rarch = pg.name("rsrc"), pg.name("rarch")
    anchor = datasets.make_anchor()
    settings = project.Settings(pg.url_for(rsrc), pg.url_for(rarch))
    sections: list[tuple[str, list[str]]] = []
    deep_after = max(1, n - DEEP_PAGES * PAGE) if n > DEEP_PAGES * PAGE + PAGE else max(1, n // 2)
    try:
        pg.create_db(rsrc)
        for sql in datasets.EVENTS.ddl("pg"):
            pg.execute(sql, rsrc)
        pg.create_db(rarch)
        try:
            setup = project.setup(settings, "events", cursor_after_id=deep_after)
        except Exception as exc:  # noqa: BLE001
            return [("Reads / purge", [f"not run: set-up failed: {type(exc).__name__}: {exc}"])]
        log(f"archive: building {n:,} archived events rows")
        t0 = time.perf_counter()
        pg.execute(POPULATE_ARCHIVE.format(anchor=anchor.isoformat(sep=" "), n=int(n)), rarch)
        pg.execute("VACUUM ANALYZE archived_rows", rarch)
        log(f"archive: built in {time.perf_counter() - t0:.1f}s")
        if reads:
            source_rows = 4 * int(n)  # enough to outlast the four wrk runs
            log(f"source: building {source_rows:,} events rows to archive during the reads")
            for sql in datasets.EVENTS.fill("pg", source_rows, anchor):
                pg.execute(sql, rsrc)
            pg.execute(f"UPDATE events SET id = id + {source_rows}", rsrc)  # after the archived ids, no overlap
            pg.execute("VACUUM ANALYZE events", rsrc)
            sections.append((f"Archive reads with {n:,} archived rows (GET /archives/events?limit={PAGE}, "
                             f"waitress {WAITRESS_THREADS} threads, wrk -d{bench.args.wrk_seconds}s)",
                             read_bench(bench, settings, setup, n, deep_after)))
        if purge:
            count = "SELECT COUNT(*) FROM archived_rows WHERE table_name = 'events'"
            # Rows the reads' archive run archived just now stay (they are not a year old).
            recent = int(query(settings.archive_url, count + " AND archived_at > now() - INTERVAL '1 day'")[0][0])
            pg.before_measure()
            child = project.run_job(settings, "purge", "events")
            record = project.last_run(settings.archive_url, "purge", "events")
            left = int(query(settings.archive_url, count)[0][0]) - recent
            purged = n - left
            if child.returncode != 0 or record is None or record.status != "succeeded" or left:
                lines = [f"failed: exit status {child.returncode}, run "
                         f"{record.status if record else 'not recorded'}, {left:,} rows left: "
                         f"{(record.error if record else None) or child.tail()}"]
            else:
                lines = ["| rows purged | seconds (whole process) | rows/s | peak MB | left | run record rows_deleted |",
                         "|---:|---:|---:|---:|---:|---:|",
                         f"| {purged:,} | {child.seconds:.2f} | {purged / child.seconds:,.0f} "
                         f"| {child.peak_kb / 1024:.0f} | {left:,} | {record.rows_deleted:,} |"]
            log(f"purge: {purged:,} rows in {child.seconds:.2f}s (whole process), {left:,} left")
            sections.append((f"Purge of {n:,} archived rows on PostgreSQL (flask purge-now, whole process, "
                             f"delete_after_days={datasets.DELETE_AFTER_DAYS})", lines))
    finally:
        if not bench.args.keep:
            pg.drop_db(rsrc)
            pg.drop_db(rarch)
    return sections


def read_bench(bench: "Run", settings: project.Settings, setup: dict[str, Any], n_rows: int,
               deep_after: int) -> list[str]:
    from .cli import log

    env = settings.env()
    if not shutil.which("wrk"):
        return ["not run: wrk is not installed (apt-get install wrk)"]
    token = setup["token"]
    port = free_port()
    base = f"http://127.0.0.1:{port}/archives/events?limit={PAGE}"
    server = start_server(env, port)
    lines = ["| page | clients | req/s | p50 ms | p99 ms | non-2xx | archive run going throughout | target |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    job: subprocess.Popen | None = None
    try:
        status, body = http_get(base, token)
        if status != 200 or not isinstance(body, dict) or len(body.get("items") or []) != PAGE:
            return [f"not run: first page answered {status}"]
        pages = [("first", base)]
        cursor = setup.get("cursor")
        if cursor:
            deep_url = f"{base}&cursor={urllib.parse.quote(cursor)}"
            status, body = http_get(deep_url, token)
            first_id = (body or {}).get("items", [{}])[0].get("id") if status == 200 else None
            if first_id != deep_after - 1:
                lines.append(f"| deep page | not run: the minted cursor answered {status}, "
                             f"first id {first_id} (expected {deep_after - 1}) | | | | | | |")
            else:
                pages.append((f"{(n_rows - deep_after) // PAGE:,} pages deep (id < {deep_after:,})", deep_url))
        else:
            lines.append("| deep page | n/a (no cursor service to mint a cursor) | | | | | | |")
        wrk(base, token, 3)  # warm-up
        job = subprocess.Popen([project.flask_command(), "--app", "archiver", "archive-now", "--table", "events"],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)  # past its start-up: batches are moving
        for threads, connections in CLIENTS:
            for name, url in pages:
                stats = wrk(url, token, bench.args.wrk_seconds, threads, connections)
                going = job.poll() is None
                log(f"reads {name}, {connections} client(s): {stats}, archive run still going: {going}")
                ok = (stats["p99"] is not None and stats["p99"] <= 50 and not stats["non2xx"] and going)
                lines.append(f"| {name} | {connections} | {fmt(stats['rps'])} | {fmt(stats['p50'], 1)} "
                             f"| {fmt(stats['p99'], 1)} | {int(stats['non2xx'] or 0)} "
                             f"| {'yes' if going else 'NO: it ended first'} "
                             f"| {'met' if ok else 'NOT met'} (p99 ≤ 50 ms during a run) |")
        if job.wait() != 0:
            lines.append(f"| (the archive run exited {job.returncode}) | | | | | | | |")
    finally:
        if job is not None and job.poll() is None:
            job.wait()
        stop_server(server)
    return lines


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"
