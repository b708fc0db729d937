"""Gentle on production: sleeps, pauses and budgets between batches (pt-archiver, gh-ost style).

Before each batch is read (so no row of the source is locked while it waits):

* ``sleep_ms`` and/or ``sleep_ratio`` — sleep a fixed time, and/or this fraction of the last
  batch's duration (pt-archiver's ``--sleep`` and ``--sleep-coef``);
* **replica lag** over ``max_replica_lag_seconds`` — pause, checking again every
  ``check_seconds``, until it is back under (``--max-lag`` / ``--check-interval``; gh-ost's
  ``--max-lag-millis``); the adaptive batch size halves too;
* **load**: active sessions on the source over ``max_active_sessions`` — pause likewise
  (gh-ost's ``--max-load``); over ``critical_active_sessions`` — stop the run (``--critical-load``).

Between batches the run also stops cleanly when ``max_run_seconds`` or ``max_rows_per_run`` is
reached (``--run-time``), and says why (``--why-quit``). The signals come from the backends
(:class:`Signals`, one database's own queries in its package); every pause is counted by reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass(frozen=True)
class ThrottleSettings:
    """How a run of one policy spares the source (None: no such limit)."""

    sleep_ms: int = 0
    sleep_ratio: float = 0.0
    max_run_seconds: float | None = None
    max_rows_per_run: int | None = None
    max_replica_lag_seconds: float | None = None
    max_active_sessions: int | None = None
    critical_active_sessions: int | None = None
    check_seconds: float = 1.0

    @property
    def watches_signals(self) -> bool:
        return any(v is not None for v in (self.max_replica_lag_seconds, self.max_active_sessions,
                                           self.critical_active_sessions))


#: The throttle settings that read each signal of the source (a backend declares the signals it
#: reports in ``Capabilities.signals``).
SIGNAL_FIELDS: dict[str, tuple[str, ...]] = {
    "active_sessions": ("max_active_sessions", "critical_active_sessions"),
    "replica_lag": ("max_replica_lag_seconds",),
}


class Signals(Protocol):
    """Where a throttle reads the state of the source (a backend's queries, or a test's values)."""

    def replica_lag(self) -> float | None:
        """Seconds the replica (or the slowest one) is behind; None when unknown or none."""

    def active_sessions(self) -> int | None:
        """Sessions running a statement on the source now (ours left out); None when unknown."""


class NoSignals:
    """A source without signals (or a policy that watches none)."""

    def replica_lag(self) -> float | None:
        return None

    def active_sessions(self) -> int | None:
        return None


@dataclass
class Pause:
    """Why the run waited: how often, how long in all, and the last value seen."""

    count: int = 0
    seconds: float = 0.0
    last: str = ""


class StopRun(Exception):
    """The run must stop between batches (a budget reached, critical load); ``str()`` says why and
    ``critical`` is true when the source was overloaded (gh-ost's ``--critical-load``)."""

    def __init__(self, why: str, *, critical: bool = False) -> None:
        super().__init__(why)
        self.critical = critical


@dataclass
class Throttle:
    """One run's throttle (see the module docstring)."""

    settings: ThrottleSettings = field(default_factory=ThrottleSettings)
    signals: Signals = field(default_factory=NoSignals)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    #: Called with a line such as "paused: replica lag 4.2 s > 2 s" when a pause starts.
    on_pause: Callable[[str], None] | None = None
    #: Called when the source needs a lighter hand (lag): the adaptive sizer halves the batch.
    on_lag: Callable[[], None] | None = None
    #: Checked while paused: a stop request ends the wait (and the run).
    should_stop: Callable[[], bool] = lambda: False

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.pauses: dict[str, Pause] = {}
        self.slept = 0.0
        self._last_read: float | None = None
        self._signals_fine_at: float | None = None  # when the signals were last read and fine

    @property
    def paused_seconds(self) -> float:
        return sum(p.seconds for p in self.pauses.values())

    def budget_left(self, rows_done: int) -> str | None:
        """Why the run must stop now (a budget reached), or None."""
        s = self.settings
        if s.max_run_seconds is not None and self.clock() - self.started >= s.max_run_seconds:
            return f"time budget reached ({s.max_run_seconds:g} s)"
        if s.max_rows_per_run is not None and rows_done >= s.max_rows_per_run:
            return f"row budget reached ({s.max_rows_per_run:,} rows)"
        return None

    def before_batch(self) -> None:
        """Sleep and pause as the settings say, before the next batch is read (raises StopRun)."""
        s = self.settings
        now = self.clock()
        if self._last_read is not None:
            wait = s.sleep_ms / 1000 + s.sleep_ratio * (now - self._last_read)
            if wait > 0:
                self.sleep(wait)
                self.slept += wait
        if s.watches_signals and (self._signals_fine_at is None
                                  or self.clock() - self._signals_fine_at >= s.check_seconds):
            self._wait_for_signals()  # read at most every check_seconds while all is well
            self._signals_fine_at = self.clock()
        self._last_read = self.clock()

    def _wait_for_signals(self) -> None:
        s = self.settings
        while True:
            reason = self._why_pause()
            if reason is None:
                return
            key, text = reason
            pause = self.pauses.setdefault(key, Pause())
            pause.count += 1
            pause.last = text
            if self.on_pause is not None:
                self.on_pause(f"paused: {text}")
            if key == "replica lag" and self.on_lag is not None:
                self.on_lag()
            while True:  # wait, checking again every check_seconds, until it is gone
                if self.should_stop():
                    raise StopRun("stopped on request while paused")
                if s.max_run_seconds is not None and self.clock() - self.started >= s.max_run_seconds:
                    raise StopRun(f"time budget reached ({s.max_run_seconds:g} s) while paused: {text}")
                t0 = self.clock()
                self.sleep(s.check_seconds)
                pause.seconds += self.clock() - t0
                again = self._why_pause()
                if again is None or again[0] != key:
                    break
                pause.last = again[1]
            if again is None:
                return

    def _why_pause(self) -> tuple[str, str] | None:
        s = self.settings
        if s.critical_active_sessions is not None or s.max_active_sessions is not None:
            active = self.signals.active_sessions()
            if active is not None:
                if s.critical_active_sessions is not None and active > s.critical_active_sessions:
                    raise StopRun(f"critical load: {active} active sessions > {s.critical_active_sessions}",
                                  critical=True)
                if s.max_active_sessions is not None and active > s.max_active_sessions:
                    return "load", f"load {active} active sessions > {s.max_active_sessions}"
        if s.max_replica_lag_seconds is not None:
            lag = self.signals.replica_lag()
            if lag is not None and lag > s.max_replica_lag_seconds:
                if lag == float("inf"):
                    return "replica lag", "replica lag unknown: the replica is not replicating"
                return "replica lag", f"replica lag {lag:.1f} s > {s.max_replica_lag_seconds:g} s"
        return None

    def summary(self) -> dict:
        """Sleeps and pauses, for the run record."""
        out: dict = {}
        if self.slept:
            out["slept_seconds"] = round(self.slept, 3)
        if self.pauses:
            out["pauses"] = {k: {"count": p.count, "seconds": round(p.seconds, 3), "last": p.last}
                             for k, p in self.pauses.items()}
        return out


__all__ = ["NoSignals", "Pause", "SIGNAL_FIELDS", "Signals", "StopRun", "Throttle", "ThrottleSettings"]
