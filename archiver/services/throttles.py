"""Each run's throttle: the policy's own limits over the service's THROTTLE_* defaults, the source's
signals (and the replica's, with REPLICA_DATABASE_URL), and what a pause tells the run record and log.

A THROTTLE_* default on a signal the source's database cannot report (active sessions or replica
lag of a SQLite source) is left out, with a warning in the log: a policy's own such field is
refused when it is saved instead (the engine's policy check).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import sqlalchemy as sa
from flask import current_app

from config import THROTTLE_DEFAULTS

from ..engine.archive import throttle_for
from ..engine.backends import source_ops_for
from ..engine.policy import PolicySpec
from ..engine.throttle import SIGNAL_FIELDS, Throttle
from ..extensions import db
from .source_db import source_engine

log = logging.getLogger(__name__)

#: The bind of REPLICA_DATABASE_URL (archiver/__init__.py register_config).
REPLICA_BIND = "replica"


def replica_engine() -> sa.Engine | None:
    """The replica whose lag the throttles read (REPLICA_DATABASE_URL), or None."""
    return db.engines.get(REPLICA_BIND) if current_app.config.get("REPLICA_DATABASE_URL") else None


def check_seconds() -> float:
    return current_app.config["THROTTLE_CHECK_MS"] / 1000


def throttle_defaults() -> dict[str, Any]:
    """The THROTTLE_* settings by policy field, without those on signals the source cannot report."""
    cfg = current_app.config
    defaults = {field: cfg[setting] for field, setting in THROTTLE_DEFAULTS.items()}
    reported = set(source_ops_for(source_engine()).capabilities.signals)
    if replica_engine() is not None:
        reported |= {"replica_lag"} & set(source_ops_for(replica_engine()).capabilities.signals)
    for signal, fields in SIGNAL_FIELDS.items():
        for field in fields:
            if signal not in reported and defaults.get(field):
                log.warning("%s ignored: a %s source cannot report %s", THROTTLE_DEFAULTS[field],
                            source_engine().dialect.name, signal.replace("_", " "))
                defaults[field] = 0
    return defaults


def run_throttle(spec: PolicySpec, on_pause: Callable[[str], None] | None = None) -> Throttle:
    """A run's throttle for ``spec`` (its settings already merged with the defaults)."""
    return throttle_for(source_engine(), spec.throttle, replica=replica_engine(), on_pause=on_pause)


__all__ = ["REPLICA_BIND", "check_seconds", "replica_engine", "run_throttle", "throttle_defaults"]
