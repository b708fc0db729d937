"""Retention of the security records: audit events past ``AUDIT_RETENTION_DAYS`` and login
sessions (token families) whose tokens have all expired. Run daily by the scheduler (after the
purge) and by ``flask prune-security``."""
from __future__ import annotations

from datetime import datetime

from . import audit, tokens


def prune_security_records(now: datetime | None = None) -> dict[str, int]:
    """Delete what retention allows; returns how many rows of each kind were deleted."""
    return {"audit_events": audit.prune(now), "token_families": tokens.prune_expired(now)}
