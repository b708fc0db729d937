"""archive-now / purge-now: run a job once in the foreground.

Prints a progress line per batch (on a terminal, or with --progress) and a
summary per table and in total. SIGTERM/SIGINT ask the job to stop after the
current batch (committed batches stay committed); a second signal kills as
usual. Exit status: 0 when no table failed (skipped tables, whose lease
another runner holds, do not count as failures), 1 when a table failed,
130 when stopped by a signal, 2 for a usage error (unknown table).
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


def _progress_printer(enabled: bool) -> Callable[[BatchProgress], None] | None:
    if not enabled:
        return None

    def show(p: BatchProgress) -> None:
        rate = p.total_rows / p.elapsed_seconds if p.elapsed_seconds > 0 else 0.0
        verb = "archived" if p.kind == "archive" else "purged"
        click.echo(f"{p.table_name}: batch {p.batch}: {p.rows} rows ({p.total_rows} {verb}, {rate:,.0f} rows/s)")
        sys.stdout.flush()

    return show


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
            line += ", moved inside the server"
        elif o.pipelined:
            line += ", batches pipelined"
        if o.redone:
            line += f" ({o.redone} batch{'es' if o.redone != 1 else ''} redone alone)"
        if o.error:
            line += f" - {o.error}"
        click.echo(line)
        for table, rows in o.children.items():
            click.echo(f"  with {rows} row(s) of {table}")
        if o.skipped:
            held = "held back" if not o.dry_run else "would be held back"
            total = o.rows_skipped if not o.dry_run else sum(o.skipped.values())
            click.echo(f"  {total} row(s) {held} (still referenced; tried again next run):")
            for reference, rows in o.skipped.items():
                click.echo(f"    {rows} by {reference}")
    rate = report.total_rows / report.seconds if report.seconds > 0 else 0.0
    counts = {s: sum(1 for o in report.outcomes if o.status == s) for s in ("succeeded", "failed", "partial", "skipped")}
    click.echo(f"total: {verb} {report.total_rows} rows in {report.seconds:.2f} s ({rate:,.0f} rows/s); "
               f"{len(report.outcomes)} table(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
               + (" - stopped by signal" if report.stopped else ""))


def _run(kind: str, table: str | None, dry_run: bool, progress: bool | None) -> None:
    show = _progress_printer(sys.stdout.isatty() if progress is None else progress)
    stop = StopFlag()
    stop.install()
    try:
        runner = job_service.run_archive if kind == "archive" else job_service.run_purge
        report = runner(table, trigger="cli", dry_run=dry_run, should_stop=stop, on_batch=show)
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
        stop.restore()
    if not report.outcomes:
        click.echo("no enabled policies: nothing to do")
    _summary(report)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)
    if report.stopped or stop():
        raise SystemExit(EXIT_STOPPED)


_table = click.option("--table", "table", default=None, metavar="TABLE", help="Only this table (its policy must be enabled).")
_dry = click.option("--dry-run", is_flag=True, help="Count what would be moved/purged; change nothing.")
_progress = click.option("--progress/--no-progress", default=None,
                         help="Print a line per batch (default: only when stdout is a terminal).")


@click.command("archive-now")
@_table
@_dry
@_progress
@with_appcontext
def archive_now_command(table: str | None, dry_run: bool, progress: bool | None) -> None:
    """Archive the rows every enabled policy selects, now, in the foreground."""
    _run("archive", table, dry_run, progress)


@click.command("purge-now")
@_table
@_dry
@_progress
@with_appcontext
def purge_now_command(table: str | None, dry_run: bool, progress: bool | None) -> None:
    """Delete archived rows past their retention, now, in the foreground."""
    _run("purge", table, dry_run, progress)


COMMANDS = [archive_now_command, purge_now_command]
