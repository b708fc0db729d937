"""Graceful stop of the serving process (waitress, ``wsgi.py``): SIGTERM/SIGINT.

``docker stop`` sends SIGTERM, then SIGKILL after its timeout. On the first
SIGTERM or SIGINT the serving process stops the scheduler (no new job starts),
asks every run of this process to stop after its current batch (they end
``interrupted`` with their counters, and release their table locks), waits for
them at most ``SHUTDOWN_TIMEOUT_SECONDS``, and then makes waitress close its
listening socket and exit. A run that has not finished its batch by then dies
with the process: its lock dies with it (PostgreSQL/MariaDB at once, SQLite when
the next run sees the pid gone) and the next run of the table records it as
``abandoned``. A second signal during the wait exits at once.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from flask import Flask

from ..services import jobs as job_service
from . import shutdown_scheduler

log = logging.getLogger(__name__)


def graceful_stop(timeout: float) -> list[int]:
    """Stop the scheduler and this process's runs after their current batch; wait at most
    ``timeout`` seconds. Returns the ids of runs still going on at the deadline."""
    started = time.monotonic()
    job_service.SHUTDOWN.set()  # before the scheduler: a job it starts meanwhile stops at once
    shutdown_scheduler()
    left = job_service.shutdown(max(0.0, timeout - (time.monotonic() - started)))
    if left:
        log.error("shutdown: run(s) %s did not finish their batch within %ss; exiting anyway (their locks die "
                  "with this process; the next run of each table records it as abandoned)",
                  ", ".join(map(str, left)), timeout)
    else:
        log.warning("shutdown: no run left going on after %.1f s", time.monotonic() - started)
    return left


def install_signal_handlers(app: Flask) -> bool:
    """In the serving process's main thread: SIGTERM/SIGINT stop it gracefully (see module doc).
    Returns False (and does nothing) outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    timeout = float(app.config["SHUTDOWN_TIMEOUT_SECONDS"])
    state: dict[str, Any] = {"stopping": False}

    def handle(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if state["stopping"]:
            log.error("received %s again: exiting now", name)
            raise SystemExit(1)
        state["stopping"] = True
        running = job_service.active_runs()
        log.warning("received %s: stopping the scheduler and %d run(s) of this process after their current "
                    "batch (at most %ss)", name, len(running), timeout)
        graceful_stop(timeout)
        raise SystemExit(0)  # waitress closes its sockets and serve() returns

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    return True
