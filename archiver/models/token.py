"""Login sessions ("token families"): every token carries its family id; revoking the family revokes them all."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import utcnow


class TokenFamily(db.Model):
    """The tokens issued from one login: one refresh token at a time (rotated on every refresh)
    and the access tokens refreshed from it.

    ``refresh_jti`` is the only refresh token of the family that may still be used; presenting an
    older one is a reuse and revokes the family (``revoked_reason = "reuse"``). Logout revokes it
    too (``"logout"``). A row is kept until ``expires_at`` (the last of its tokens' expiries) and
    then pruned: after that every token naming it has expired anyway.
    """

    __tablename__ = "token_families"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    refresh_jti: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
