"""Serve the API with waitress: ``python -m archiver.serve [--host H] [--port P] [--threads N]``.

What plain ``waitress-serve`` does not: the request-body limit is the app's own
``MAX_CONTENT_LENGTH`` (1 MiB), so waitress refuses a larger body as soon as it sees its
``Content-Length`` (or, chunked, as soon as it passes the limit) instead of reading it all
first; and the errors waitress answers by itself (413 body too large, 400 unreadable request,
431 headers too large, 501) use the service's JSON envelope
``{"error": {"code", "message", "details"}}``. ``scripts/run.sh`` and the container use this;
``wsgi:app`` stays available for other WSGI servers.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

_CODES = {400: "bad_request", 413: "payload_too_large", 431: "bad_request", 501: "not_implemented"}


class JsonErrorTask(ErrorTask):
    """waitress's own error answers, in the service's error envelope."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"error": {"code": _CODES.get(error.code, "bad_request"), "message": error.reason,
                                     "details": None}}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
                                      ("Cache-Control", "no-store")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def make_server(app: Any, *, host: str = "127.0.0.1", port: int = 8000, threads: int = 4, **adjustments: Any):
    """A waitress server for ``app`` whose body limit matches ``MAX_CONTENT_LENGTH`` (waitress refuses
    a body of ``max_request_body_size`` bytes or more, hence the + 1) and whose own errors are JSON."""
    limit = int(app.config["MAX_CONTENT_LENGTH"])
    server = create_server(app, host=host, port=port, threads=threads, max_request_body_size=limit + 1,
                           ident="archiver", **adjustments)
    servers = [server] if isinstance(server, BaseWSGIServer) else [
        s for s in getattr(server, "map", {}).values() if isinstance(s, BaseWSGIServer)]
    for s in servers:
        s.channel_class = JsonErrorChannel
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m archiver.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("WAITRESS_THREADS", "4")))
    args = parser.parse_args(argv)
    from . import create_app

    from .scheduler.shutdown import install_signal_handlers

    app = create_app()
    # SIGTERM/SIGINT (docker stop): the scheduler stops, running jobs finish their current batch and
    # are recorded `interrupted`, then server.run() returns (SHUTDOWN_TIMEOUT_SECONDS bounds the wait).
    install_signal_handlers(app)
    server = make_server(app, host=args.host, port=args.port, threads=args.threads)
    server.print_listen("archiver serving on http://{}:{}")
    server.run()


if __name__ == "__main__":
    main()
