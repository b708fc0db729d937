"""Liveness, readiness and the scheduler's job list."""
from __future__ import annotations

from flask import jsonify

from ..errors import ApiError
from ..extensions import Blueprint
from ..services import database

blp = Blueprint("system", __name__, description="Health, readiness and scheduler")


@blp.route("/health")
@blp.doc(security=[])
def health():
    """Liveness: the process answers (no database access)."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.doc(security=[], responses={503: {"description": "A database is unreachable"}})
def ready():
    """Readiness: both databases answer, else 503 naming the failed ones."""
    failed = []
    for name, key in (("archive", None), ("source", "source")):
        try:
            database.ping(key)
        except Exception:  # noqa: BLE001 - any failure means not ready; no detail leaks
            failed.append(name)
    if failed:
        raise ApiError.unavailable(f"Database unreachable: {', '.join(failed)}", {"failed": failed})
    return {"status": "ready", "databases": {"archive": "ok", "source": "ok"}}
