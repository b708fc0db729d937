"""Readiness: do both databases answer? Bounded in time, and never more than one probe at a time.

A request asks :func:`check`; it starts a probe (one thread per database,
``SELECT 1`` through the pool, whose connections are checked before use) unless
one is already going on, and waits for it at most ``timeout`` seconds. A database
that has not answered by then counts as down. A probe stuck on a dead connection
(until its connect or network timeout) is shared by every request meanwhile, so
hanging databases tie up at most one extra thread per database, never the
server's request threads; a database that comes back is seen by the next probe.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..extensions import db

DATABASES = (("archive", None), ("source", "source"))


@dataclass
class _Probe:
    results: dict[str, str] = field(default_factory=dict)  # name -> "ok" | "error"
    done: dict[str, threading.Event] = field(default_factory=dict)


_lock = threading.Lock()
_current: dict[str, _Probe] = {}  # per app (engines differ)


def _ping(engine: sa.Engine, probe: _Probe, name: str) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        probe.results[name] = "ok"
    except Exception:  # noqa: BLE001 - any failure means not ready; no detail leaks
        probe.results[name] = "unreachable"
    finally:
        probe.done[name].set()


def check(timeout: float) -> dict[str, str]:
    """``{"archive": state, "source": state}``; state ``ok``, ``unreachable`` or ``timeout``."""
    engines = {name: db.engines[key] for name, key in DATABASES}
    app_key = str(id(db.engines[None]))
    with _lock:
        probe = _current.get(app_key)
        if probe is None or all(e.is_set() for e in probe.done.values()):
            probe = _current[app_key] = _Probe(done={name: threading.Event() for name in engines})
            for name, engine in engines.items():
                threading.Thread(target=_ping, args=(engine, probe, name), daemon=True,
                                 name=f"ready-probe-{name}").start()
    states: dict[str, str] = {}
    for name in engines:
        if probe.done[name].wait(timeout):
            states[name] = probe.results.get(name, "unreachable")
        else:
            states[name] = "timeout"
            timeout = 0  # the bound is for the whole request: do not wait again for the other
    return states
