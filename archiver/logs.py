"""The service's log lines: one handler on the root logger, readable text or JSON (``LOG_FORMAT``).

``LOG_LEVEL`` is the level of the service's own loggers (``archiver.*``) and of waitress's (its
"Serving on" line is INFO); every other library keeps the root logger's level (warnings and
above), so SQLAlchemy never logs statements or their parameters. Requests and runs log their
fields as ``extra`` (``event``, ``run_id``, ``route``, ...): the JSON lines carry them as keys, the
text lines say the same in the message. Nothing secret is logged: no token, password,
``Authorization`` header, query string or row content (tests/conftest.py checks every test's logs).
"""
from __future__ import annotations

import logging
import sys
from typing import Any

#: Loggers whose level LOG_LEVEL sets.
OWN_LOGGERS = ("archiver", "waitress")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is logged (a progress bar or a test runner may
    have put a stand-in there), like Python's last-resort handler."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT``: ``json`` (python-json-logger: one object a line, ``time``,
    ``level``, ``logger``, ``message`` and the record's extra fields) or ``text``."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter
        return JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                             rename_fields={"levelname": "level", "name": "logger"})
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str) -> logging.Handler:
    """Put the service's handler on the root logger (replacing one an earlier app put there) and
    set the level of the service's own loggers; returns the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "archiver", False)]:
        root.removeHandler(old)
    handler = StderrHandler()
    handler.archiver = True  # type: ignore[attr-defined]
    handler.setFormatter(make_formatter(log_format))
    root.addHandler(handler)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    return handler
