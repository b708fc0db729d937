"""WSGI entry point (``wsgi:app``) for running the service under another WSGI server.

scripts/run.sh and the container (scripts/docker-entrypoint.sh) do not use it: they run
``python -m archiver.serve`` (waitress with the app's body limit and JSON errors), which
builds the app the same way. Like it, this installs the SIGTERM/SIGINT handlers (when loaded
in the main thread): the scheduler stops, running jobs finish their current batch and end
``interrupted``, then the process exits (``archiver/scheduler/shutdown.py``; the bound is
``SHUTDOWN_TIMEOUT_SECONDS``).
"""
from archiver import create_app
from archiver.scheduler.shutdown import install_signal_handlers

app = create_app()
install_signal_handlers(app)
