"""In-process scheduling with Flask-APScheduler (jobs live in jobs.py).

Started once per process: not in tests (unless SCHEDULER_ENABLED is set),
not in the debug reloader's parent, and its own HTTP API stays off.
"""
from __future__ import annotations

import os

from flask import Flask

from ..extensions import scheduler
from . import jobs


def should_start(app: Flask) -> bool:
    if not app.config.get("SCHEDULER_ENABLED", True):
        return False
    # Under the Werkzeug reloader only the child (WERKZEUG_RUN_MAIN=true) runs jobs.
    if app.debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return False
    return True


def init_scheduler(app: Flask, start: bool | None = None) -> None:
    """Bind the scheduler to ``app``, add the jobs, and start it if wanted."""
    app.config["SCHEDULER_API_ENABLED"] = False
    if getattr(scheduler, "app", None) is not app:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        scheduler.init_app(app)
    jobs.register_jobs(app)
    if (should_start(app) if start is None else start) and not scheduler.running:
        scheduler.start()
