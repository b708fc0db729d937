"""The policy value the engine works from, and the cutoff arithmetic.

Boundary semantics (documented in the README): the archive cutoff is
``now - archive_after_days`` truncated down to the whole second (UTC); a row
moves when its date is *strictly older* than the cutoff, a row dated exactly
at the cutoff stays. Likewise purge deletes archived rows whose
``archived_at`` is strictly older than ``now - delete_after_days``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .sizing import BatchSizer, SizingSettings
from .throttle import ThrottleSettings

#: How a policy sizes its batches: ``adaptive`` (the default; ``batch_size``, when set, is the
#: ceiling) or ``fixed`` (every batch exactly ``batch_size`` rows).
BATCH_MODES = ("adaptive", "fixed")


@dataclass(frozen=True)
class NamedChild:
    """A child table the policy names: ``table(columns)`` references ``parent(references)``.

    Moves like an ``ON DELETE CASCADE`` child (archived with its parent row,
    deleted before it), whether or not the database declares the relation and
    whatever its delete rule. ``parent`` defaults to the policy's table.
    """

    table: str
    columns: tuple[str, ...]
    references: tuple[str, ...]
    parent: str | None = None


@dataclass(frozen=True)
class PolicySpec:
    """What to archive from one source table, and how long to keep it."""

    table_name: str
    date_column: str = "created_at"
    archive_after_days: int = 30
    delete_after_days: int = 365
    custom_criteria: str | None = None
    batch_size: int | None = None
    children: tuple[NamedChild, ...] = ()
    batch_mode: str = "adaptive"
    throttle: ThrottleSettings = ThrottleSettings()  # sleeps, pauses and budgets (see .throttle)

    def __post_init__(self) -> None:
        if self.archive_after_days < 0:
            raise ValueError("archive_after_days must be >= 0")
        if self.delete_after_days < 1:
            raise ValueError("delete_after_days must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {', '.join(BATCH_MODES)}")
        if self.batch_mode == "fixed" and self.batch_size is None:
            raise ValueError("a fixed batch_mode needs a batch_size")

    def sizer(self, settings: SizingSettings = SizingSettings()) -> BatchSizer:
        """A new batch sizer for one run of this policy."""
        if self.batch_mode == "fixed":
            return BatchSizer(fixed=self.batch_size, settings=settings)
        return BatchSizer(ceiling=self.batch_size, settings=settings)


def as_utc(now: datetime) -> datetime:
    """``now`` as an aware UTC datetime (a naive value is taken as UTC)."""
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def archive_cutoff(spec: PolicySpec, now: datetime) -> datetime:
    """Rows dated strictly before this instant (aware UTC, whole second) are archived."""
    return (as_utc(now) - timedelta(days=spec.archive_after_days)).replace(microsecond=0)


def purge_cutoff(spec: PolicySpec, now: datetime) -> datetime:
    """Archived rows with ``archived_at`` strictly before this instant are purged."""
    return (as_utc(now) - timedelta(days=spec.delete_after_days)).replace(microsecond=0)
