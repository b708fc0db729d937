"""The audit trail: one append-only row per security-relevant event (who, what, when, from where)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..sqltypes import json_document
from ._types import BigIntPK, utcnow

_Details = json_document()  # JSONB on PostgreSQL


class AuditEvent(db.Model):
    """One audited event. The API only ever inserts these rows; retention deletes the oldest.

    ``actor_id``/``actor`` name the user who acted (``actor`` is the username at the time, or
    ``cli``/``scheduler``); both are NULL for an anonymous attempt (a failed login names the
    username it tried in ``details``). ``target`` is what was acted on: a table name, or
    ``user:<id>``. ``details`` holds the rest as JSON (filters, row counts, before/after).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_action_id", "action", "id"),
        Index("ix_audit_events_actor_id_id", "actor_id", "id"),
        Index("ix_audit_events_target_id", "target", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="success")
    actor_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(_Details, nullable=True)
