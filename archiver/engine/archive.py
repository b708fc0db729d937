"""Archive a table: check its policy, then move its qualifying rows batch by batch.

The entry points the services (and the benchmark) call. The batch protocol and
how a run's batches move are in :mod:`.batches`; the policy check in :mod:`.check`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import sqlalchemy as sa

from .backends import archive_ops_for, backend_of, source_ops_for
from .backends.base import ArchiveOps, DatabaseSignals, SourceOps
from .batches import CHECKPOINTS, ArchiveResult, BatchProgress, BatchRun
from .check import check_policy
from .failures import db_side
from .lease import TableLease
from .objects import count_graph
from .plan import TablePlan
from .policy import PolicySpec, as_utc
from .rowcodec import encode_row
from .sizing import SizingSettings
from .throttle import NoSignals, Signals, Throttle, ThrottleSettings


def _never() -> bool:
    return False


def plan_table(source: sa.Engine, spec: PolicySpec, now: datetime, ops: SourceOps | None = None) -> TablePlan:
    """Check the policy against the source table and compile it (no rows change)."""
    ops = ops or source_ops_for(source)
    with db_side("source"), source.connect() as conn:
        return check_policy(conn, spec, ops, as_utc(now))


def count_archivable(source: sa.Engine, spec: PolicySpec, *, now: datetime) -> tuple[int, datetime]:
    """How many rows would move right now, and the cutoff used."""
    count, plan = count_and_plan(source, spec, now=now)
    return count, plan.cutoff


def count_and_plan(source: sa.Engine, spec: PolicySpec, *, now: datetime) -> tuple[int, TablePlan]:
    """How many rows would move right now, and the checked plan (its ``cutoff`` is the one used):
    ``archive_table(…, now=now, plan=plan)`` runs it without checking the policy (reflecting the
    table) again."""
    ops = source_ops_for(source)
    plan = plan_table(source, spec, now, ops)
    with db_side("source"), source.connect() as conn:
        return ops.count(conn, plan), plan


def oldest_archivable(source: sa.Engine, spec: PolicySpec, *, now: datetime) -> tuple[datetime | None, datetime]:
    """The date of the oldest row that qualifies right now (None: no row does), and the cutoff used:
    the archive lag's reading (one ``MIN`` over the policy's predicate, in the backend's SQL)."""
    ops = source_ops_for(source)
    plan = plan_table(source, spec, now, ops)
    with db_side("source"), source.connect() as conn:
        return ops.oldest_date(conn, plan), plan.cutoff


@dataclass
class ArchivePreview:
    """What a run would move now: the rows that qualify, what moves with them, what is held back."""

    would_archive: int
    cutoff: datetime
    moves_with: list[dict]
    held_by: list[dict]
    #: The first qualifying rows in primary-key order, JSON-ready (as they would be archived).
    samples: list[dict] = field(default_factory=list)

#: The most sample rows a preview returns.
MAX_SAMPLE_ROWS = 50


def preview_archive(source: sa.Engine, spec: PolicySpec, *, now: datetime, sample_rows: int = 0) -> ArchivePreview:
    """Check the policy and count what a run would move now, its child tables included (moves nothing).

    ``sample_rows`` (at most :data:`MAX_SAMPLE_ROWS`): also return that many of the qualifying rows,
    first by primary key, encoded as their archived payloads would be.
    """
    ops = source_ops_for(source)
    plan = plan_table(source, spec, now, ops)
    with db_side("source"), source.connect() as conn:
        graph = count_graph(conn, ops, plan)
        preview = ArchivePreview(ops.count(conn, plan), plan.cutoff, graph.moves_with, graph.held_by)
        limit = max(0, min(int(sample_rows), MAX_SAMPLE_ROWS))
        if limit and preview.would_archive:
            stmt = sa.select(plan.table).where(plan.predicate).order_by(*plan.pk).limit(limit)
            preview.samples = [encode_row(dict(row._mapping)) for row in conn.execute(stmt)]
        return preview


def throttle_for(source: sa.Engine, settings: ThrottleSettings, *, replica: sa.Engine | None = None,
                 on_pause: Callable[[str], None] | None = None,
                 source_ops: SourceOps | None = None) -> Throttle:
    """A run's throttle: ``settings``, the signals read with the source backend's queries (the
    replica lag on ``replica`` when given), ``on_pause`` told each pause ("paused: …")."""
    signals: Signals = NoSignals()
    if settings.watches_signals:
        sops = source_ops or source_ops_for(source)
        signals = DatabaseSignals(sops, source_ops_for(replica) if replica is not None else None)
    return Throttle(settings, signals, on_pause=on_pause)


def archive_table(source: sa.Engine, archive: sa.Engine, spec: PolicySpec, *, now: datetime,
                  run_id: int | None = None, dry_run: bool = False,
                  should_stop: Callable[[], bool] = _never,
                  on_batch: Callable[[BatchProgress], None] | None = None,
                  lease: TableLease | None = None,
                  checkpoint: Callable[[str], None] | None = None,
                  source_ops: SourceOps | None = None, archive_ops: ArchiveOps | None = None,
                  in_server: bool = True, pipeline: bool = True,
                  sizing: SizingSettings = SizingSettings(), throttle: Throttle | None = None,
                  plan: TablePlan | None = None) -> ArchiveResult:
    """Archive ``spec.table_name`` from ``source`` into ``archive`` for the cutoff at ``now``.

    ``plan``, if given, is the policy already checked for this ``spec`` and ``now`` (by
    :func:`count_and_plan` just before); otherwise the policy is checked here.

    Batches are taken in primary-key order (keyset) until none is left or
    ``should_stop()`` is true (checked between batches). ``lease``, if given,
    is renewed between batches (LeaseLost stops the run). ``checkpoint(name)``
    is called at each point of :data:`.batches.CHECKPOINTS`. With ``pipeline``
    (default), a source with row locks overlaps consecutive batches of a large
    enough table (``result.extra["pipelined"]``), and with ``in_server`` too
    (default), a MariaDB source and archive on one server move those batches
    inside the server, and two SQLite files move theirs inside SQLite
    (``result.extra["in_server"]``). A batch a pipeline had to
    roll back and move alone counts in ``result.extra["redone"]``. Batches are sized by
    ``spec.sizer(sizing)`` (:mod:`.sizing`; ``result.extra["batch_sizes"]`` says how), and
    spaced, paused or stopped by ``throttle`` (:mod:`.throttle`; ``result.extra["throttle"]``,
    ``result.stop_reason``). There,
    ``on_batch`` and ``should_stop`` may run while the next batch already holds
    its row locks (they must not wait for source rows), and a stop lets the
    batches in flight finish. Raises EngineError subclasses (safe messages);
    rows of committed batches stay moved.
    """
    started = time.perf_counter()
    now = as_utc(now)
    sops = source_ops or source_ops_for(source)
    aops = archive_ops or archive_ops_for(archive)
    if plan is None:
        plan = plan_table(source, spec, now, sops)
    result = ArchiveResult(spec.table_name, plan.cutoff, dry_run=dry_run)
    if dry_run:
        with db_side("source"), source.connect() as conn:
            result.would_archive = sops.count(conn, plan)
            graph = count_graph(conn, sops, plan)
        result.children = {m["table"]: m["rows"] for m in graph.moves_with}
        result.skipped = {h["reference"]: h["rows"] for h in graph.held_by}
        result.seconds = time.perf_counter() - started
        return result

    hook = checkpoint or (lambda _name: None)
    backend = backend_of(source)
    shared = backend is backend_of(archive) and backend.same_database(source, archive)
    with db_side("source"):
        sconn = sops.connect()
    source_restore = None
    try:
        with db_side("source"):
            source_restore = sops.prepare(sconn)
        with db_side("archive"):
            aconn = sconn if shared else archive.connect()
            restore = None if shared else aops.prepare(aconn)
        try:
            sizer = spec.sizer(sizing)
            throttle = throttle or throttle_for(source, spec.throttle, source_ops=sops)
            run = BatchRun(sops, aops, plan, sconn, aconn, shared, result, now, run_id, hook,
                           should_stop, on_batch, lease, started, sizer, throttle)
            run.move(archive, in_server=in_server, pipeline=pipeline)
        finally:
            if not shared:
                try:
                    if restore is not None:
                        restore()
                finally:
                    aconn.close()
    finally:
        try:
            if source_restore is not None:
                source_restore()
        finally:
            sconn.close()
    result.extra["batch_sizes"] = sizer.summary()
    if throttle.summary():
        result.extra["throttle"] = throttle.summary()
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["ArchivePreview", "ArchiveResult", "BatchProgress", "CHECKPOINTS", "archive_table", "count_and_plan",
           "count_archivable", "oldest_archivable", "plan_table", "preview_archive", "throttle_for"]
