"""What this process tells its operators: Prometheus metrics and the run log lines.

With ``METRICS_ENABLED`` each app gets a :class:`Metrics` in ``app.extensions`` (its own
``CollectorRegistry``, so two apps in one process never share counters) that ``GET /metrics``
exposes. Every process counts what it did itself: the runs it finished, the requests it served,
the archive lag its scheduler measured (docs/operations.md says how to scrape several); the time
of each table's last succeeded run is read from the run history, so it covers every process. The
``prometheus_client`` metrics are safe from any thread (waitress's, a background run's, the
scheduler's).

A run's lines (logger ``archiver.runs``): ``run.started`` when its record is made,
``run.finished`` (or ``run.failed``, a warning) when it is closed, with its counts, status and
duration as ``extra`` fields; its throttle's pauses are logged by ``services/jobs.py``
(``run.paused``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context

from ..engine.archive import oldest_archivable
from ..engine.policy import as_utc, utcnow
from ..extensions import db
from ..models import ArchivePolicy, ArchiveRun, RunKind, RunStatus
from .policies import policy_spec
from .source_db import source_engine

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)
run_log = logging.getLogger("archiver.runs")

#: Where an app keeps its Metrics.
EXTENSION = "archiver.metrics"
#: Run durations: a second to six hours.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
#: Request durations: 5 ms to 30 s.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """One app's metrics, in a registry of their own (with the process's CPU, memory and GC)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.rows_archived = Counter("archiver_rows_archived", "Rows copied into the archive by archive runs "
                                     "(run record: rows_written)", ["table"], registry=r)
        self.rows_purged = Counter("archiver_rows_purged", "Archived rows deleted by purge runs "
                                   "(run record: rows_deleted)", ["table"], registry=r)
        self.rows_restored = Counter("archiver_rows_restored", "Rows put back into the source by restore runs "
                                     "(run record: rows_written)", ["table"], registry=r)
        self.rows_skipped = Counter("archiver_rows_skipped", "Qualifying rows an archive run left in the source "
                                    "because a row that stays references them (run record: rows_skipped)",
                                    ["table"], registry=r)
        self.runs = Counter("archiver_runs", "Runs that ended, by kind and final status (dry runs included; "
                            "a run that could not start counts as failed)", ["kind", "status"], registry=r)
        self.run_seconds = Histogram("archiver_run_duration_seconds", "Duration of the runs that ended "
                                     "(dry runs and skipped runs left out)", ["kind", "table"],
                                     buckets=RUN_BUCKETS, registry=r)
        LastSuccess(registry=r)
        self.pause_seconds = Counter("archiver_throttle_pause_seconds", "Time archive runs waited on a "
                                     "throttle signal, by reason (load, replica_lag)", ["table", "reason"],
                                     registry=r)
        self.pauses = Counter("archiver_throttle_pauses", "Pauses of archive runs by reason", ["table", "reason"],
                              registry=r)
        self.sleep_seconds = Counter("archiver_throttle_sleep_seconds", "Time archive runs slept between "
                                     "batches (sleep_ms, sleep_ratio)", ["table"], registry=r)
        self.archive_lag = Gauge("archiver_archive_lag_seconds", "Age of the oldest source row that qualifies "
                                 "under the policy but is still in the source (0: none), measured by the "
                                 "scheduler after each archival tick", ["table"], registry=r)
        self.archive_lag_measured = Gauge("archiver_archive_lag_measured_timestamp_seconds", "When the archive "
                                          "lag was last measured, Unix time", registry=r)
        self.http_requests = Counter("archiver_http_requests", "HTTP requests answered, by method, route (the "
                                     "URL rule, not the path) and status", ["method", "route", "status"],
                                     registry=r)
        self.http_seconds = Histogram("archiver_http_request_duration_seconds", "Time to answer a request (to "
                                      "the start of the body of a streamed export)", ["method", "route"],
                                      buckets=HTTP_BUCKETS, registry=r)
        self._lag_tables: set[str] = set()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format the ``Accept`` header asks for (OpenMetrics when a Prometheus
        server asks for it, else the Prometheus text format 0.0.4), and its content type."""
        from prometheus_client.exposition import choose_encoder
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


LAST_SUCCESS = "archiver_last_success_timestamp_seconds"


class LastSuccess:
    """``archiver_last_success_timestamp_seconds``, read from the run history at each scrape: when
    the last succeeded run (not a dry run) of each kind and table ended, whichever process ran it
    (``archive-now`` from cron, another replica, before a restart). When the archive database does
    not answer, the scrape goes on without it."""

    def __init__(self, registry: "CollectorRegistry") -> None:
        registry.register(self)

    def _family(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily
        return GaugeMetricFamily(LAST_SUCCESS, "When the last succeeded run (not a dry run) of the table ended, "
                                 "Unix time, from the run history (runs of every process)", labels=["kind", "table"])

    def describe(self) -> list[Any]:
        return [self._family()]

    def collect(self) -> list[Any]:
        family = self._family()
        if not has_app_context():
            return [family]
        runs = ArchiveRun.__table__
        stmt = (sa.select(runs.c.kind, runs.c.table_name, sa.func.max(runs.c.finished_at))
                .where(runs.c.status == RunStatus.SUCCEEDED.value, runs.c.dry_run.is_(False))
                .group_by(runs.c.kind, runs.c.table_name).order_by(runs.c.kind, runs.c.table_name))
        try:
            with db.engines[None].connect() as conn:
                rows = conn.execute(stmt).all()
        except Exception as exc:  # noqa: BLE001 - the other metrics are still served
            log.warning("could not read the last succeeded runs for /metrics: %s", type(exc).__name__)
            return [family]
        for kind, table, finished in rows:
            if finished is not None:
                family.add_metric([kind, table], as_utc(finished).timestamp())
        return [family]


def init_metrics(app: Flask) -> Metrics | None:
    """Give ``app`` its Metrics when METRICS_ENABLED (None otherwise: nothing is counted)."""
    if not app.config["METRICS_ENABLED"]:
        return None
    metrics = app.extensions[EXTENSION] = Metrics()
    return metrics


def current_metrics() -> Metrics | None:
    """The current app's Metrics (None when metrics are off, or outside an app context)."""
    if not has_app_context():
        return None
    return current_app.extensions.get(EXTENSION)


# --- runs --------------------------------------------------------------------------

@dataclass(frozen=True)
class RunEnd:
    """A run's record as it was closed (read before the commit: no second query)."""

    run_id: int
    kind: str
    table_name: str
    trigger: str
    status: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    rows_skipped: int = 0
    rows_conflict: int = 0
    details: dict[str, Any] | None = None
    error: str | None = None

    @property
    def seconds(self) -> float:
        started = self.started_at if self.started_at.tzinfo else self.started_at.replace(tzinfo=timezone.utc)
        return max(0.0, (self.finished_at - started).total_seconds())


def run_started(run_id: int, kind: str, table_name: str, trigger: str, dry_run: bool) -> None:
    """Log that a run's record was made (``run.started``)."""
    run_log.info("run %s: %s%s of %s started (%s)", run_id, kind, " (dry run)" if dry_run else "", table_name,
                 trigger, extra={"event": "run.started", "run_id": run_id, "table": table_name, "kind": kind,
                                 "trigger": trigger, "dry_run": dry_run})


def run_ended(end: RunEnd) -> None:
    """Log a run's end (``run.finished``, or ``run.failed`` as a warning) and count it."""
    failed = end.status == RunStatus.FAILED.value
    seconds = round(end.seconds, 3)
    fields = {"event": "run.failed" if failed else "run.finished", "run_id": end.run_id, "table": end.table_name,
              "kind": end.kind, "trigger": end.trigger, "dry_run": end.dry_run, "status": end.status,
              "duration_s": seconds, "rows_read": end.rows_read, "rows_written": end.rows_written,
              "rows_deleted": end.rows_deleted, "rows_skipped": end.rows_skipped, "rows_conflict": end.rows_conflict}
    if end.error:
        fields["error"] = end.error
    run_log.log(logging.WARNING if failed else logging.INFO,
                "run %s: %s%s of %s %s in %.1f s (%d read, %d written, %d deleted, %d skipped)%s", end.run_id,
                end.kind, " (dry run)" if end.dry_run else "", end.table_name, end.status, seconds, end.rows_read,
                end.rows_written, end.rows_deleted, end.rows_skipped, f": {end.error}" if end.error else "",
                extra=fields)
    metrics = current_metrics()
    if metrics is None:
        return
    try:
        _count_run(metrics, end)
    except Exception:  # noqa: BLE001 - a metric must never fail a run
        log.exception("could not count run %s in the metrics", end.run_id)


def _count_run(m: Metrics, end: RunEnd) -> None:
    m.runs.labels(end.kind, end.status).inc()
    if end.dry_run or end.status == RunStatus.SKIPPED.value:
        return
    m.run_seconds.labels(end.kind, end.table_name).observe(end.seconds)
    table = end.table_name
    if end.kind == RunKind.ARCHIVE.value:
        m.rows_archived.labels(table).inc(end.rows_written)
        m.rows_skipped.labels(table).inc(end.rows_skipped)
        throttle = (end.details or {}).get("throttle") or {}
        if throttle.get("slept_seconds"):
            m.sleep_seconds.labels(table).inc(throttle["slept_seconds"])
        for reason, pause in (throttle.get("pauses") or {}).items():
            label = reason.replace(" ", "_")
            m.pause_seconds.labels(table, label).inc(pause.get("seconds", 0))
            m.pauses.labels(table, label).inc(pause.get("count", 0))
    elif end.kind == RunKind.PURGE.value:
        m.rows_purged.labels(table).inc(end.rows_deleted)
    elif end.kind == RunKind.RESTORE.value:
        m.rows_restored.labels(table).inc(end.rows_written)


def run_not_started(kind: str, table_name: str) -> None:
    """A run that could not even get a record (the archive database failed): counted as failed."""
    metrics = current_metrics()
    if metrics is not None:
        metrics.runs.labels(kind, RunStatus.FAILED.value).inc()


def runs_abandoned(kinds: list[str]) -> None:
    """Runs found abandoned (their process died): counted with status ``abandoned``."""
    metrics = current_metrics()
    if metrics is not None:
        for kind in kinds:
            metrics.runs.labels(kind, RunStatus.ABANDONED.value).inc()


# --- archive lag -------------------------------------------------------------------

def measure_archive_lag(now: datetime | None = None) -> dict[str, float]:
    """Set the archive lag of every enabled policy's table (seconds since the date of its oldest
    row that qualifies now, 0 when none does) and drop the tables no longer enabled; returns the
    lags set. A table whose lag cannot be read (its policy no longer fits, the source fails) keeps
    no value. Does nothing when metrics are off."""
    metrics = current_metrics()
    if metrics is None:
        return {}
    now = now or utcnow()
    policies = db.session.execute(sa.select(ArchivePolicy).where(ArchivePolicy.enabled.is_(True))
                                  .order_by(ArchivePolicy.table_name)).scalars().all()
    specs = [policy_spec(p) for p in policies]
    db.session.rollback()  # no snapshot held while the source is read (SQLite)
    lags: dict[str, float] = {}
    for spec in specs:
        try:
            oldest, _cutoff = oldest_archivable(source_engine(), spec, now=now)
        except Exception as exc:  # noqa: BLE001 - the run of this table reports why
            log.warning("could not measure the archive lag of %s: %s", spec.table_name, type(exc).__name__)
            continue
        lags[spec.table_name] = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    for table in metrics._lag_tables - set(lags):
        try:
            metrics.archive_lag.remove(table)
        except KeyError:
            pass
    for table, lag in lags.items():
        metrics.archive_lag.labels(table).set(lag)
    metrics._lag_tables = set(lags)
    metrics.archive_lag_measured.set(now.timestamp())
    return lags


# --- HTTP ---------------------------------------------------------------------------

def request_answered(method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request (``route``: its URL rule, so the labels stay few)."""
    metrics = current_metrics()
    if metrics is not None:
        metrics.http_requests.labels(method, route, str(status)).inc()
        metrics.http_seconds.labels(method, route).observe(seconds)
