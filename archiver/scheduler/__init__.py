"""In-process scheduling with Flask-APScheduler (jobs live in jobs.py).

The scheduler is a process-wide singleton (``extensions.scheduler``) bound to
one app at a time. It is started once per serving process: by waitress /
``wsgi.py`` / any WSGI server, and by ``flask run`` (only in the reloader's
child). It is not started by other ``flask`` CLI commands (init-db, seed-demo,
archive-now…), nor when ``SCHEDULER_ENABLED`` is false (the default in tests;
a test turns it on with ``init_scheduler(app, start=True)`` and off with
``shutdown_scheduler()``). Flask-APScheduler's own HTTP API stays off.
"""
from __future__ import annotations

import atexit
import logging
import threading

import click
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from flask.helpers import get_debug_flag
from werkzeug.serving import is_running_from_reloader

from ..extensions import scheduler
from . import jobs

log = logging.getLogger(__name__)
_lock = threading.RLock()


def _serving_process() -> bool:
    """False inside a ``flask`` CLI command other than ``run``, and in ``flask run``'s reloader parent."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return True  # WSGI server (waitress, wsgi.py) or plain Python
    if ctx.info_name != "run":
        return False
    reload = ctx.params.get("reload")
    if reload is None:
        reload = get_debug_flag()
    return not reload or is_running_from_reloader()


def should_start(app: Flask) -> bool:
    """Whether this process should run the jobs for ``app``."""
    if not app.config["SCHEDULER_ENABLED"]:
        return False
    return _serving_process()


def _job_defaults(app: Flask) -> dict:
    return {"coalesce": True, "max_instances": 1,
            "misfire_grace_time": app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"]}


def _reset() -> None:
    """Stop the scheduler and give the singleton a fresh APScheduler.

    A BackgroundScheduler cannot be restarted after shutdown (its thread pool
    is closed), and its jobs belong to the app it was bound to.
    """
    if scheduler.running:
        scheduler.shutdown(wait=False)
    scheduler._scheduler = BackgroundScheduler()  # Flask-APScheduler keeps it in this attribute
    scheduler.app = None


def init_scheduler(app: Flask, start: bool | None = None) -> None:
    """Bind the scheduler to ``app`` (re-binding resets it), add the jobs, and start it if wanted.

    ``start=None`` decides by :func:`should_start`; ``True``/``False`` force it.
    """
    app.config["SCHEDULER_API_ENABLED"] = False
    app.config.setdefault("SCHEDULER_JOB_DEFAULTS", _job_defaults(app))
    with _lock:
        if scheduler.app is not app:
            _reset()
            scheduler.init_app(app)
            jobs.register_jobs(app)
        wanted = should_start(app) if start is None else start
        if wanted and not scheduler.running:
            # Start the APScheduler directly: Flask-APScheduler's start() silently
            # skips when FLASK_DEBUG is set outside the reloader; should_start decides.
            scheduler.scheduler.start()
            log.info("scheduler started with %d job(s)", len(scheduler.get_jobs()))


def shutdown_scheduler() -> None:
    """Stop the scheduler (if running) and unbind it; ``init_scheduler`` can start it again."""
    with _lock:
        _reset()


atexit.register(shutdown_scheduler)
