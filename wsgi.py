"""WSGI entry point: ``waitress-serve wsgi:app`` (scripts/run.sh, the container).

Besides building the app, it makes SIGTERM/SIGINT stop the serving process
gracefully: the scheduler stops, running jobs finish their current batch and end
``interrupted``, then waitress exits (``archiver/scheduler/shutdown.py``; the
bound is ``SHUTDOWN_TIMEOUT_SECONDS``).
"""
from archiver import create_app
from archiver.scheduler.shutdown import install_signal_handlers

app = create_app()
install_signal_handlers(app)
