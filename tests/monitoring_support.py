"""Helpers of the monitoring tests: read /metrics, catch log records, know the secrets of the tests."""
from __future__ import annotations

import logging
import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.app_support import JWT_SECRET, PASSWORD
from tests.auth_support import MAX_PASSWORD, TOO_LONG_PASSWORD

#: The metrics token of the tests that set METRICS_TOKEN.
METRICS_TOKEN = "metrics-scrape-token-0123456789abcdef"
#: Text that must never be in a log line: any JWT (header.payload.signature, base64url JSON) and the
#: passwords and secrets of the tests.
JWT_PATTERN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
SECRETS = (PASSWORD, MAX_PASSWORD, TOO_LONG_PASSWORD, JWT_SECRET, METRICS_TOKEN)
#: LogRecord attributes that are not the message or an extra field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a log line could show of ``record``: message, extra fields, traceback."""
    try:
        texts = [record.getMessage()]
    except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format
        texts = [str(record.msg), repr(record.args)]
    texts += [repr(v) for k, v in vars(record).items() if k not in _STANDARD]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        texts.append(record.exc_text)
    return texts


class LogCatcher(logging.Handler):
    """Keeps every record that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def leaks(self) -> list[str]:
        """The log texts that hold a JWT or a secret of the tests."""
        found = []
        for record in self.records:
            for text in record_texts(record):
                if JWT_PATTERN.search(text) or any(secret in text for secret in SECRETS):
                    found.append(f"{record.name}: {text[:300]}")
        return found


def scrape(client, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus_client's own parser: {(sample name, sorted labels): value}."""
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/plain"
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: Any) -> float | None:
    """One sample's value (None when there is no such sample)."""
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def total(samples: dict, name: str, **labels: Any) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    want = {(k, str(v)) for k, v in labels.items()}
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))
