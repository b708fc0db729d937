"""How many rows each batch takes: a fixed size, or adaptive (the default for new policies).

Adaptive sizing starts small and follows the time each batch takes, from one
committed batch to the next (in an overlapped run, the pace of the slowest
step): well under the target time the next batch is larger (at most twice),
over it smaller, in proportion; a lock wait, deadlock or statement timeout on
the source halves it at once. It never exceeds the ceiling — the policy's
``batch_size`` when set, else the engine's ``max_rows`` — nor ``max_bytes``
of memory (estimated from the batches so far: their payload text plus a fixed
cost per record), so memory stays bounded whatever the rows hold.

Row locks are held from a batch's SELECT to its COMMIT: the target time
bounds how long a production row waits for the archiver.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class SizingSettings:
    """The adaptive sizer's bounds (``BATCH_*`` settings)."""

    target_seconds: float = 1.0
    start_rows: int = 1000
    min_rows: int = 100
    max_rows: int = 50_000
    max_bytes: int = 32 << 20


class BatchSizer:
    """Chooses each batch's row count (see the module docstring).

    ``fixed``: every batch takes exactly that many rows (a policy's fixed size).
    ``ceiling``: the largest adaptive batch (a policy's ``batch_size``).
    """

    def __init__(self, *, fixed: int | None = None, ceiling: int | None = None,
                 settings: SizingSettings = SizingSettings(), clock: Callable[[], float] = time.monotonic) -> None:
        self.fixed = fixed
        self.settings = settings
        self.clock = clock
        self.ceiling = min(ceiling or settings.max_rows, settings.max_rows) if fixed is None else fixed
        self.size = fixed if fixed is not None else max(1, min(settings.start_rows, self.ceiling))
        self._floor = min(settings.min_rows, self.ceiling)
        self._last = clock()
        self._row_bytes: float | None = None
        self.first = self.smallest = self.largest = self.size
        self.batches = 0
        self.shrunk = 0

    @property
    def adaptive(self) -> bool:
        return self.fixed is None

    def __call__(self) -> int:
        """The next batch's row count."""
        return self.size

    def restart_clock(self) -> None:
        """Start timing the next batch now (after a pause, say)."""
        self._last = self.clock()

    def committed(self, rows: int, held_bytes: int | None = None) -> None:
        """A batch of ``rows`` committed (holding about ``held_bytes`` of memory, when known): size the next one."""
        now = self.clock()
        seconds, self._last = now - self._last, now
        self.batches += 1
        if held_bytes is not None and rows:
            self._row_bytes = held_bytes / rows
        if not self.adaptive or not rows:
            return
        target = self.settings.target_seconds
        if seconds <= 0:
            ratio = 2.0
        else:
            ratio = target / seconds
        if ratio > 1.25:
            self._set(self.size * min(ratio, 2.0))
        elif ratio < 0.8:
            self._set(self.size * max(ratio, 0.25))

    def conflicted(self) -> None:
        """The source answered a batch with a lock wait, a deadlock or a statement timeout: halve it."""
        self.shrunk += 1
        self.restart_clock()
        if self.adaptive:
            self._set(self.size / 2)

    def _set(self, rows: float) -> None:
        cap = self.ceiling
        if self._row_bytes:
            cap = min(cap, max(self._floor, int(self.settings.max_bytes / self._row_bytes)))
        self.size = int(max(self._floor, min(cap, rows)))
        self.smallest = min(self.smallest, self.size)
        self.largest = max(self.largest, self.size)

    def summary(self) -> dict[str, Any]:
        """The sizes used, for the run record."""
        out: dict[str, Any] = {"mode": "adaptive" if self.adaptive else "fixed", "first": self.first,
                               "last": self.size, "min": self.smallest, "max": self.largest}
        if self.adaptive:
            out.update(ceiling=self.ceiling, target_seconds=self.settings.target_seconds)
        if self.shrunk:
            out["shrunk_on_conflict"] = self.shrunk
        return out


__all__ = ["BatchSizer", "SizingSettings"]
