"""Delete a table's archived rows whose retention has run out, in bounded batches."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import sqlalchemy as sa

from .backends import archive_ops_for
from .backends.base import ArchiveOps
from .batches import BatchProgress
from .failures import db_side
from .lease import TableLease
from .policy import PolicySpec, as_utc, purge_cutoff
from .sizing import BatchSizer, SizingSettings


@dataclass
class PurgeResult:
    """What one purge run of one table did (``would_purge`` only for a dry run).

    ``rows_deleted`` counts every archived row deleted, ``children_deleted``
    those of them that had moved with a parent row (purged with it).
    """

    table_name: str
    cutoff: datetime
    dry_run: bool = False
    rows_deleted: int = 0
    children_deleted: int = 0
    batches: int = 0
    stopped: bool = False
    stop_reason: str | None = None  # purge runs have no throttle: always None (ArchiveResult's twin)
    stopped_on_critical_load: bool = False
    would_purge: int | None = None
    seconds: float = 0.0


def _never() -> bool:
    return False


def purge_table(archive: sa.Engine, spec: PolicySpec, *, now: datetime, dry_run: bool = False,
                batch_size: int | None = None, should_stop: Callable[[], bool] = _never,
                on_batch: Callable[[BatchProgress], None] | None = None, lease: TableLease | None = None,
                archive_ops: ArchiveOps | None = None,
                sizing: SizingSettings = SizingSettings()) -> PurgeResult:
    """Delete ``archived_rows`` of ``spec.table_name`` with ``archived_at < now - delete_after_days``.

    Each batch is its own short transaction, so none grows with the archive's size;
    batches are sized like the policy's archive batches (``batch_size`` forces a fixed size).
    """
    started = time.perf_counter()
    ops = archive_ops or archive_ops_for(archive)
    cutoff = purge_cutoff(spec, as_utc(now))
    result = PurgeResult(spec.table_name, cutoff, dry_run=dry_run)
    sizer = BatchSizer(fixed=batch_size, settings=sizing) if batch_size else spec.sizer(sizing)
    with db_side("archive"), archive.connect() as conn:
        if dry_run:
            result.would_purge = ops.count_expired(conn, spec.table_name, cutoff)
            conn.rollback()
        else:
            while True:
                if should_stop():
                    result.stopped = True
                    break
                if lease is not None:
                    lease.renew_if_due()
                limit = sizer()
                with conn.begin():
                    n, below = ops.purge_batch(conn, spec.table_name, cutoff, limit)
                if n == 0:
                    break
                sizer.committed(n)
                result.rows_deleted += n + below
                result.children_deleted += below
                result.batches += 1
                if on_batch is not None:
                    on_batch(BatchProgress(spec.table_name, "purge", result.batches, n + below, result.rows_deleted,
                                           time.perf_counter() - started))
                if n < limit:
                    break
    result.seconds = time.perf_counter() - started
    return result
