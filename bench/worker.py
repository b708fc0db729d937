"""The project's archival job in a warm process: ``python -m bench.worker --result FILE --table T``.

Builds the app from the environment (like the CLI), then calls the same service the
``archive-now`` command calls (``services.jobs.run_archive``) and times only that call.
Writes one JSON object to ``--result``: ``ok``, ``seconds`` (the job), ``startup_seconds``
(imports and create_app), ``peak_kb`` (this process's VmHWM) and per table ``status``,
``rows``, ``in_server``, ``pipelined``, ``redone``, ``error``. With ``--profile FILE`` the
whole process (start-up and job) runs under cProfile, and SQL wall time per statement
kind is added up on the app's engines; the summary goes to FILE.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .proc import peak_rss_kb


def time_sql(app: Any, totals: dict[str, list[float]]) -> None:
    """Add up wall time per kind of SQL statement on the app's engines."""
    from sqlalchemy import event

    from archiver.extensions import db

    with app.app_context():
        engines = {("archive" if key is None else key): engine for key, engine in db.engines.items()}
    for label, engine in engines.items():
        def before(conn, _cursor, _statement, _params, _context, _executemany):
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


def write_profile(profiler: Any, path: str, sql_times: dict[str, list[float]], result: dict[str, Any]) -> None:
    import pstats
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"start-up {result.get('startup_seconds', 0):.2f} s, job {result.get('seconds', 0):.2f} s "
                 "(both under cProfile)\n")
        fh.write("=== SQL wall time by statement during the job (calls, seconds, parameter sets)\n")
        for key, (calls, seconds, rows) in sorted(sql_times.items(), key=lambda kv: -kv[1][1]):
            fh.write(f"{seconds:9.3f} s  {calls:7d} calls  {rows:9d} sets  {key}\n")
        for key in ("tottime", "cumulative"):
            fh.write(f"=== sorted by {key}\n")
            pstats.Stats(profiler, stream=fh).strip_dirs().sort_stats(key).print_stats(30)


def archive(table: str, profile: str = "") -> dict[str, Any]:
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    t_start = time.perf_counter()
    from archiver import create_app
    from archiver.services import jobs

    app = create_app()
    sql_times: dict[str, list[float]] = {}
    if profile:
        time_sql(app, sql_times)
    with app.app_context():
        startup = time.perf_counter() - t_start
        t0 = time.perf_counter()
        report = jobs.run_archive(table, trigger="cli")
        seconds = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
    outcomes = [{"table": o.table_name, "status": o.status, "rows": o.rows, "in_server": o.in_server,
                 "pipelined": o.pipelined, "redone": o.redone, "error": o.error} for o in report.outcomes]
    result = {"ok": report.ok, "seconds": seconds, "startup_seconds": startup, "outcomes": outcomes}
    if profiler is not None:
        write_profile(profiler, profile, sql_times, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--result", required=True, help="write the JSON result here")
    parser.add_argument("--table", required=True)
    parser.add_argument("--profile", default="", help="write a cProfile + SQL time summary to this file")
    args = parser.parse_args(argv)
    try:
        result = archive(args.table, args.profile)
    except Exception as exc:  # reported to the harness, which prints it in the table
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["peak_kb"] = peak_rss_kb()
    with open(args.result, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
