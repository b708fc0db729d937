"""One measured step of the benchmark, run in its own process.

``python -m scripts.bench_worker <step> …`` is started by ``scripts/bench.py``,
which reads this process's own peak RSS (VmHWM) from the result and by sampling. The
last stdout line is ``BENCH_RESULT {json}``: ``seconds`` is the step's own time
(interpreter and app start-up excluded), ``peak_kb`` this process's VmHWM
at the end, or ``missing``/``error`` says why the step could not run.

Steps:
  setup        init-db on the archive DB, upsert the table's policy, optionally
               make an admin and print its access token / mint a cursor
  archive      the project's archival job, exactly as ``archive-now`` runs it
  purge        the project's purge, exactly as ``purge-now`` runs it
  limit-pg     PostgreSQL limit: row_to_json + COPY TO STDOUT piped into COPY FROM STDIN, one DELETE
  limit-sqlite SQLite limit: ATTACH + INSERT … SELECT json_object(…) + DELETE in one engine

The project steps read SOURCE_DATABASE_URL / ARCHIVE_DATABASE_URL and the rest
of the service's configuration from the environment, like the CLI does.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sqlite3
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Missing(Exception):
    """The project code this step needs is not there (yet)."""


def peak_rss_kb(pid: int | str = "self") -> int | None:
    """VmHWM (peak resident set) of a live process, in KiB; None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def emit(result: dict[str, Any]) -> None:
    result.setdefault("peak_kb", peak_rss_kb())
    sys.stdout.flush()
    print("BENCH_RESULT " + json.dumps(result, default=str), flush=True)


# --- the project ----------------------------------------------------------

def _create_app():
    from archiver import create_app
    return create_app()


def _cli_command(app, name: str):
    import click
    with click.Context(app.cli) as ctx:
        return app.cli.get_command(ctx, name)


def run_project_job(kind: str, table: str, cli_args: list[str], profile: str = "") -> dict[str, Any]:
    """Run ``archive-now``/``purge-now`` in-process (app already built, so start-up is not timed)."""
    command_name = f"{kind}-now"
    t_start = time.perf_counter()
    app = _create_app()
    from flask.cli import ScriptInfo
    command = _cli_command(app, command_name)
    if command is None:
        if importlib.util.find_spec("archiver.engine.archive") is None:
            raise Missing("engine missing")
        raise Missing(f"`flask {command_name}` missing")
    args = cli_args or ["--table", table]
    out = io.StringIO()
    with app.app_context():
        startup = time.perf_counter() - t_start
        t0 = time.perf_counter()
        profiler = None
        sql_times: dict[str, list[float]] = {}
        if profile:
            import cProfile
            time_sql(app, sql_times)
            profiler = cProfile.Profile()
            profiler.enable()
        with contextlib.redirect_stdout(out):
            try:
                code = command.main(args=args, prog_name=command_name, obj=ScriptInfo(create_app=lambda: app),
                                    standalone_mode=False)
            except SystemExit as exc:  # a command may sys.exit() with its status
                code = exc.code
        seconds = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
            write_profile(profiler, profile, sql_times)
    text = out.getvalue()
    sys.stdout.write(text)
    if code not in (None, 0):
        return {"ok": False, "error": f"{command_name} exited with {code}", "seconds": seconds,
                "output": text[-2000:]}
    return {"ok": True, "seconds": seconds, "startup_seconds": startup, "output": text[-2000:],
            "via": f"flask {command_name} {' '.join(args)}"}


def time_sql(app: Any, totals: dict[str, list[float]]) -> None:
    """Add up wall time per kind of SQL statement on the app's engines (commits: see cProfile)."""
    from sqlalchemy import event

    from archiver.extensions import db

    with app.app_context():
        engines = {("archive" if key is None else key): engine for key, engine in db.engines.items()}
    for label, engine in engines.items():
        def before(conn, _cursor, _statement, _params, context, _executemany):
            conn.info.setdefault("bench_t0", []).append(time.perf_counter())

        def after(conn, _cursor, statement, params, _context, executemany, label=label):
            elapsed = time.perf_counter() - conn.info["bench_t0"].pop()
            words = statement.split()
            kind = " ".join(words[:3]) if words else "?"
            rows = len(params) if executemany and isinstance(params, (list, tuple)) else 1
            entry = totals.setdefault(f"{label}: {kind[:60]}", [0, 0.0, 0])
            entry[0] += 1
            entry[1] += elapsed
            entry[2] += rows

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)


def write_profile(profiler: Any, path: str, sql_times: dict[str, list[float]]) -> None:
    """SQL time per statement kind, then the top of the cProfile run by own and cumulative time."""
    import pstats
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("=== SQL wall time by statement (calls, seconds, parameter sets)\n")
        for key, (calls, seconds, rows) in sorted(sql_times.items(), key=lambda kv: -kv[1][1]):
            fh.write(f"{seconds:9.3f} s  {calls:7d} calls  {rows:9d} sets  {key}\n")
        for key in ("tottime", "cumulative"):
            fh.write(f"=== sorted by {key}\n")
            pstats.Stats(profiler, stream=fh).strip_dirs().sort_stats(key).print_stats(30)


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """init-db, the policy row, and (optionally) an admin token and a minted cursor."""
    import sqlalchemy as sa

    from archiver.extensions import db
    from archiver.models import ArchivePolicy, Role, User
    from archiver.services import database

    app = _create_app()
    result: dict[str, Any] = {"ok": True}
    with app.app_context():
        database.init_db()
        policy = db.session.execute(
            sa.select(ArchivePolicy).where(ArchivePolicy.table_name == args.table)).scalar_one_or_none()
        if policy is None:
            policy = ArchivePolicy(table_name=args.table)
            db.session.add(policy)
        policy.date_column = args.date_column
        policy.archive_after_days = args.archive_after_days
        policy.delete_after_days = args.delete_after_days
        policy.enabled = True
        policy.updated_by = "bench"
        if args.batch_size:
            policy.batch_size = args.batch_size
        db.session.commit()
        result["batch_size"] = policy.batch_size
        if args.admin:
            from archiver.services.identity import access_token_for
            from archiver.services.passwords import hash_password
            user = db.session.execute(sa.select(User).where(User.username == args.admin)).scalar_one_or_none()
            if user is None:
                user = User(username=args.admin, password_hash=hash_password(os.urandom(12).hex(), 4),
                            role=Role.ADMIN.value)
                db.session.add(user)
                db.session.commit()
            result["token"] = access_token_for(user)
        if args.cursor_after_id is not None:
            result["cursor"] = mint_cursor(args.table, args.cursor_after_id)
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    return result


def mint_cursor(table: str, after_id: int, order: str = "desc") -> str | None:
    """The API's ``next_cursor`` for the unfiltered listing page that follows row ``after_id``.

    Signed by the app's own cursor service (needs an app context); None if that service is not there.
    """
    try:
        from archiver.engine.restore import ArchiveFilters
        from archiver.services.cursors import encode_cursor
    except ImportError:
        return None
    return encode_cursor(table, order, ArchiveFilters.from_mapping({}).fingerprint(), after_id)


# --- the database's own limits ---------------------------------------------

PG_COPY_OUT = ("COPY (SELECT %(table)s, e.id::text, row_to_json(e)::text, e.created_at AT TIME ZONE 'UTC', "
               "%(now)s::timestamptz FROM events e WHERE e.created_at < %(cutoff)s ORDER BY e.id) TO STDOUT")
PG_COPY_IN = "COPY archived_rows (table_name, source_pk, payload, row_date, archived_at) FROM STDIN"


def limit_pg(args: argparse.Namespace) -> dict[str, Any]:
    """Server-side row_to_json, COPY out of the source piped into COPY into the archive, one DELETE."""
    import psycopg2

    src = psycopg2.connect(args.src)
    arch = psycopg2.connect(args.arch)
    params = {"table": args.table, "now": args.now, "cutoff": args.cutoff}
    copy_out = src.cursor().mogrify(PG_COPY_OUT, params).decode()
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb", buffering=1 << 16)
    writer = os.fdopen(wfd, "wb", buffering=1 << 16)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with src.cursor() as cur:
                cur.copy_expert(copy_out, writer, size=1 << 16)
        except BaseException as exc:  # reported below
            failure.append(exc)
        finally:
            writer.close()

    t0 = time.perf_counter()
    producer = threading.Thread(target=produce)
    producer.start()
    try:
        with arch.cursor() as cur:
            cur.copy_expert(PG_COPY_IN, reader, size=1 << 16)
            copied = cur.rowcount
    finally:
        reader.close()
        producer.join()
    if failure:
        raise failure[0]
    arch.commit()
    with src.cursor() as cur:
        cur.execute("DELETE FROM events WHERE created_at < %(cutoff)s", params)
        deleted = cur.rowcount
    src.commit()
    seconds = time.perf_counter() - t0
    src.close()
    arch.close()
    return {"ok": True, "seconds": seconds, "rows": copied, "deleted": deleted}


def limit_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    """ATTACH the archive file, INSERT … SELECT json_object(…), DELETE, one transaction."""
    con = sqlite3.connect(args.src, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 30000")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute("ATTACH DATABASE ? AS arch", (args.arch,))
    con.execute("PRAGMA arch.journal_mode = WAL")
    con.execute("PRAGMA arch.synchronous = NORMAL")
    columns = [row[1] for row in con.execute(f'PRAGMA main.table_info("{args.table}")')]
    pairs = ", ".join(f"'{c}', \"{c}\"" for c in columns)
    params = {"table": args.table, "now": args.now, "cutoff": args.cutoff}
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    cur = con.execute(
        "INSERT INTO arch.archived_rows (table_name, source_pk, payload, row_date, archived_at) "
        f"SELECT :table, CAST(id AS TEXT), json_object({pairs}), created_at, :now "
        f'FROM main."{args.table}" WHERE created_at < :cutoff ORDER BY id', params)
    copied = cur.rowcount
    cur = con.execute(f'DELETE FROM main."{args.table}" WHERE created_at < :cutoff', params)
    deleted = cur.rowcount
    con.execute("COMMIT")
    seconds = time.perf_counter() - t0
    con.close()
    return {"ok": True, "seconds": seconds, "rows": copied, "deleted": deleted}


# --- entry point ------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_worker")
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--table", default="events")
    p.add_argument("--date-column", default="created_at")
    p.add_argument("--archive-after-days", type=int, default=30)
    p.add_argument("--delete-after-days", type=int, default=365)
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--admin", default="")
    p.add_argument("--cursor-after-id", type=int, default=None)
    for step in ("archive", "purge"):
        p = sub.add_parser(step)
        p.add_argument("--table", default="events")
        p.add_argument("--profile", default="", help="write a cProfile summary of the job to this file")
        p.add_argument("cli_args", nargs="*", help="arguments for the flask command (default: --table TABLE)")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for step in ("limit-pg", "limit-sqlite"):
        p = sub.add_parser(step)
        p.add_argument("--src", required=True)
        p.add_argument("--arch", required=True)
        p.add_argument("--table", default="events")
        p.add_argument("--cutoff", default=(now - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S"))
        p.add_argument("--now", default=now.strftime("%Y-%m-%d %H:%M:%S"))
    args = parser.parse_args(argv)
    try:
        if args.step == "setup":
            result = setup(args)
        elif args.step in ("archive", "purge"):
            result = run_project_job(args.step, args.table, args.cli_args, args.profile)
        elif args.step == "limit-pg":
            result = limit_pg(args)
        else:
            result = limit_sqlite(args)
    except Missing as exc:
        emit({"ok": False, "missing": str(exc)})
        return 3
    except Exception as exc:  # reported to the harness, which prints it in the table
        emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1
    emit(result)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
