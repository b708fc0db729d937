"""archive-now / purge-now: run a job once in the foreground.

Shows a progress bar with rate and ETA on a terminal (rich), or a plain line
per batch with ``--progress`` when the output is not a terminal, then a
summary per table and in total. SIGTERM/SIGINT ask the job to stop after the
current batch (committed batches stay committed; the run ends
``interrupted``); a second signal kills as usual.

Exit status (README "Running it"): 0 every table done (or nothing to do);
1 a table failed; 2 usage error (unknown or disabled ``--table``); 3 a table
was held by another run (who holds it is printed) and none failed; 130 stopped
before the end: by SIGTERM/SIGINT, or a run cancelled through the API. Several
apply: the first of 1, 130, 3.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Callable

import click
from flask.cli import with_appcontext

from ..engine.archive import BatchProgress
from ..engine.failures import describe_error
from ..errors import DomainError
from ..services import jobs as job_service

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HELD = 3
EXIT_CRITICAL_LOAD = 4
EXIT_STOPPED = 130


class StopFlag:
    """Set by the first SIGTERM/SIGINT; the job checks it between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self._event.is_set()

    def _handle(self, signum: int, _frame: Any) -> None:
        self._event.set()
        click.echo(f"received {signal.Signals(signum).name}: stopping after the current batch "
                   "(send it again to kill)", err=True)
        # A second signal gets the default behaviour.
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """A line per committed batch: rows so far of the total, rate and ETA (logs, pipes)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def start(self, table: str, kind: str, total: int) -> None:
        self.totals[table] = total
        verb = "to archive" if kind == "archive" else "to purge"
        click.echo(f"{table}: {total} rows {verb}")
        sys.stdout.flush()

    def batch(self, p: BatchProgress) -> None:
        rate = p.total_rows / p.elapsed_seconds if p.elapsed_seconds > 0 else 0.0
        verb = "archived" if p.kind == "archive" else "purged"
        total = self.totals.get(p.table_name)
        line = f"{p.table_name}: batch {p.batch}: {p.rows} rows ({p.total_rows}"
        if total:
            done = p.total_rows + p.rows_skipped
            eta = (total - done) / rate if rate > 0 and total > done else 0.0
            line += f" of {total} {verb}, {100 * done / total:.0f}%, {rate:,.0f} rows/s, ETA {_eta(eta)})"
        else:
            line += f" {verb}, {rate:,.0f} rows/s)"
        click.echo(line)
        sys.stdout.flush()

    def pause(self, table: str, why: str) -> None:
        _pause_line(table, why)

    def close(self) -> None:
        pass


class BarProgress:
    """A rich progress bar per table on a terminal: rows of the total, rate and ETA."""

    def __init__(self) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[rate]:>12} rows/s"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 transient=False)
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def start(self, table: str, kind: str, total: int) -> None:
        self.tasks[table] = self.progress.add_task(f"{kind} {table}", total=total or None, rate="-")

    def batch(self, p: BatchProgress) -> None:
        task = self.tasks.get(p.table_name)
        if task is None:
            task = self.tasks[p.table_name] = self.progress.add_task(f"{p.kind} {p.table_name}", total=None,
                                                                     rate="-")
        rate = p.total_rows / p.elapsed_seconds if p.elapsed_seconds > 0 else 0.0
        self.progress.update(task, completed=p.total_rows + p.rows_skipped, rate=f"{rate:,.0f}")

    def pause(self, table: str, why: str) -> None:
        self.progress.console.print(f"{table}: {why}")

    def close(self) -> None:
        self.progress.stop()


def _progress(progress: bool | None) -> PlainProgress | BarProgress | None:
    tty = sys.stdout.isatty()
    if progress is False or (progress is None and not tty):
        return None
    return BarProgress() if tty else PlainProgress()


def _pause_line(table: str, why: str) -> None:
    """A throttle's pause, said even without progress output ("orders: paused: replica lag 4.2 s > 2 s")."""
    click.echo(f"{table}: {why}")
    sys.stdout.flush()


def _throttle_line(throttle: dict[str, Any]) -> str | None:
    parts = []
    if throttle.get("slept_seconds"):
        parts.append(f"slept {throttle['slept_seconds']:.1f} s between batches")
    for reason, p in (throttle.get("pauses") or {}).items():
        parts.append(f"paused {p['count']}× for {reason}, {p['seconds']:.1f} s in all (last: {p['last']})")
    return "  throttle: " + "; ".join(parts) if parts else None


def _summary(report: job_service.JobReport) -> None:
    verb = ("would archive" if report.dry_run else "archived") if report.kind == "archive" else \
        ("would purge" if report.dry_run else "purged")
    for o in report.outcomes:
        line = f"{o.table_name}: {o.status}: {verb} {o.rows} rows in {o.seconds:.2f} s ({o.rows_per_second:,.0f} rows/s)"
        if o.cutoff is not None:
            line += f", cutoff {o.cutoff.isoformat()}"
        if o.run_id is not None:
            line += f", run {o.run_id}"
        if o.in_server:
            line += ", moved inside the database"
        elif o.pipelined:
            line += ", batches pipelined"
        if o.redone:
            line += f" ({o.redone} batch{'es' if o.redone != 1 else ''} redone alone)"
        if o.error:
            line += f" - {o.error}"
        click.echo(line)
        for table, rows in o.children.items():
            click.echo(f"  with {rows} row(s) of {table}")
        if o.batch_sizes and o.batches:
            b = o.batch_sizes
            sizes = f"{b['first']:,}" if b["min"] == b["max"] else f"{b['first']:,} → {b['last']:,} ({b['min']:,}–{b['max']:,})"
            click.echo(f"  {o.batches} batch(es), {b['mode']} size: {sizes} rows")
        if o.throttle and (line := _throttle_line(o.throttle)):
            click.echo(line)
        if o.skipped:
            held = "held back" if not o.dry_run else "would be held back"
            total = o.rows_skipped if not o.dry_run else sum(o.skipped.values())
            click.echo(f"  {total} row(s) {held} (still referenced; tried again next run):")
            for reference, rows in o.skipped.items():
                click.echo(f"    {rows} by {reference}")
    rate = report.total_rows / report.seconds if report.seconds > 0 else 0.0
    counts = {s: sum(1 for o in report.outcomes if o.status == s)
              for s in ("succeeded", "partial", "failed", "interrupted", "cancelled", "skipped")}
    click.echo(f"total: {verb} {report.total_rows} rows in {report.seconds:.2f} s ({rate:,.0f} rows/s); "
               f"{len(report.outcomes)} table(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
               + (" - stopped by signal" if report.stopped else ""))


def _held_message(o: job_service.TableOutcome) -> str:
    h = o.holder
    if h is None:
        return f"{o.table_name}: held by another run; try again when it has finished"
    return (f"{o.table_name}: held by {h.kind} run {h.run_id if h.run_id is not None else '?'} on host {h.host}, "
            f"pid {h.pid}, since {h.since.isoformat(timespec='seconds')} (last heartbeat "
            f"{h.heartbeat_at.isoformat(timespec='seconds')}); try again when it has finished")


def _run(kind: str, table: str | None, dry_run: bool, progress: bool | None) -> None:
    show = None if dry_run else _progress(progress)
    stop = StopFlag()
    stop.install()
    try:
        runner = job_service.run_archive if kind == "archive" else job_service.run_purge
        options: dict[str, Any] = {"on_pause": show.pause if show else _pause_line} if kind == "archive" else {}
        report = runner(table, trigger="cli", dry_run=dry_run, should_stop=stop,
                        on_batch=show.batch if show else None, on_start=show.start if show else None, **options)
    except job_service.UnknownPolicy as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    except DomainError as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except Exception as exc:  # noqa: BLE001 - e.g. the archive database is down: say so briefly
        click.echo(f"error: {describe_error(exc, 'archive')}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    finally:
        if show is not None:
            show.close()
        stop.restore()
    if not report.outcomes:
        click.echo("no enabled policies: nothing to do")
    _summary(report)
    for o in report.held:
        click.echo(f"error: {_held_message(o)}", err=True)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)
    if report.stopped or stop() or any(o.status == "cancelled" for o in report.outcomes):
        raise SystemExit(EXIT_STOPPED)
    if any(o.critical_load for o in report.outcomes):
        raise SystemExit(EXIT_CRITICAL_LOAD)
    if report.held:
        raise SystemExit(EXIT_HELD)


_table = click.option("--table", "table", default=None, metavar="TABLE", help="Only this table (its policy must be enabled).")
_dry = click.option("--dry-run", is_flag=True, help="Count what would be moved/purged; change nothing.")
_progress_opt = click.option("--progress/--no-progress", default=None,
                             help="Show progress (default: a bar when stdout is a terminal; with --progress "
                                  "and no terminal, a line per batch).")


@click.command("archive-now")
@_table
@_dry
@_progress_opt
@with_appcontext
def archive_now_command(table: str | None, dry_run: bool, progress: bool | None) -> None:
    """Archive the rows every enabled policy selects, now, in the foreground."""
    _run("archive", table, dry_run, progress)


@click.command("purge-now")
@_table
@_dry
@_progress_opt
@with_appcontext
def purge_now_command(table: str | None, dry_run: bool, progress: bool | None) -> None:
    """Delete archived rows past their retention, now, in the foreground."""
    _run("purge", table, dry_run, progress)


COMMANDS = [archive_now_command, purge_now_command]
